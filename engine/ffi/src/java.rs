//! JNI entry points of `com.framecache.FrameCache` (android/app/src/main/java), over the C ABI
//! of this crate. Statuses become Java exceptions carrying the engine's message; panics never
//! cross into the JVM. Direct buffers are checked against the extent their strides imply.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use jni::objects::{JByteBuffer, JClass, JIntArray, JString};
use jni::sys::{jbyteArray, jdoubleArray, jfloat, jfloatArray, jint, jlong, jobjectArray};
use jni::JNIEnv;

use crate::{
    fc_engine_boxes, fc_engine_classes, fc_engine_create, fc_engine_create_bundle, fc_engine_destroy,
    fc_engine_head_count, fc_engine_head_info, fc_engine_head_status, fc_engine_keypoints, fc_engine_mask,
    fc_engine_push_rgba, fc_engine_push_yuv420, fc_engine_stats, fc_engine_tile_map, fc_last_error, FcBox, FcClass,
    FcEngine, FcHeadInfo, FcHeadStatus, FcKeypoint, FcOptions, FcPlane, FcStats, FcStatus, FcYuv420, FC_HEAD_CLASSES,
    FC_HEAD_MASK, FC_PIXEL_RGBA,
};

/// A Java exception to throw: class and message.
struct Throw(&'static str, String);

type JResult<T> = std::result::Result<T, Throw>;

const ILLEGAL_STATE: &str = "java/lang/IllegalStateException";
const ILLEGAL_ARGUMENT: &str = "java/lang/IllegalArgumentException";

fn check(status: FcStatus) -> JResult<()> {
    if status == FcStatus::Ok {
        return Ok(());
    }
    // SAFETY: fc_last_error returns a valid NUL-terminated string.
    let message = unsafe { CStr::from_ptr(fc_last_error()) }.to_string_lossy().into_owned();
    let class = match status {
        FcStatus::InvalidArgument | FcStatus::NullPointer | FcStatus::BufferTooSmall => ILLEGAL_ARGUMENT,
        _ => ILLEGAL_STATE,
    };
    Err(Throw(class, message))
}

fn jni_error(e: jni::errors::Error) -> Throw {
    Throw(ILLEGAL_STATE, format!("JNI: {e}"))
}

/// Runs `f`; on failure or panic throws and returns `fallback`.
fn run<T>(env: &mut JNIEnv<'_>, fallback: T, f: impl FnOnce(&mut JNIEnv<'_>) -> JResult<T>) -> T {
    let outcome = catch_unwind(AssertUnwindSafe(|| f(env)));
    let throw = match outcome {
        Ok(Ok(v)) => return v,
        Ok(Err(t)) => t,
        Err(_) => Throw(ILLEGAL_STATE, "framecache: internal error (panic)".into()),
    };
    if !env.exception_check().unwrap_or(false) {
        let _ = env.throw_new(throw.0, throw.1);
    }
    fallback
}

fn non_negative(v: jint, name: &str) -> JResult<u32> {
    u32::try_from(v).map_err(|_| Throw(ILLEGAL_ARGUMENT, format!("{name} = {v} is negative")))
}

/// The address of a direct buffer holding at least `needed` bytes.
fn direct(env: &JNIEnv<'_>, buf: &JByteBuffer<'_>, needed: usize, name: &str) -> JResult<*const u8> {
    if buf.is_null() {
        return Err(Throw(ILLEGAL_ARGUMENT, format!("{name} is null")));
    }
    let addr = env
        .get_direct_buffer_address(buf)
        .map_err(|_| Throw(ILLEGAL_ARGUMENT, format!("{name} is not a direct ByteBuffer")))?;
    let capacity = env.get_direct_buffer_capacity(buf).map_err(jni_error)?;
    if capacity < needed {
        return Err(Throw(ILLEGAL_ARGUMENT, format!("{name} holds {capacity} bytes, its strides need {needed}")));
    }
    Ok(addr.cast_const())
}

/// Bytes a plane of `w x h` samples spans with these strides (0 when a stride is too small,
/// which the C ABI then reports).
fn extent(w: usize, h: usize, row: usize, step: usize) -> usize {
    if w == 0 || h == 0 {
        0
    } else {
        (h - 1) * row + (w - 1) * step + 1
    }
}

/// An engine from a model file (`bundle` false) or a bundle manifest (`bundle` true).
fn create(
    env: &mut JNIEnv<'_>,
    path: &JString<'_>,
    bundle: bool,
    options: [jint; 3],
    threshold: jfloat,
    bypass: bool,
) -> JResult<jlong> {
    let path: String = env.get_string(path).map_err(|_| Throw(ILLEGAL_ARGUMENT, "the path is null".into()))?.into();
    let path = std::ffi::CString::new(path).map_err(|_| Throw(ILLEGAL_ARGUMENT, "the path holds a NUL".into()))?;
    let [mode, tile, threads] = options;
    let options = FcOptions {
        mode: non_negative(mode, "mode")?,
        threshold,
        tile: non_negative(tile, "tile")?,
        threads: non_negative(threads, "threads")?,
        bypass: u32::from(bypass),
    };
    let mut handle = 0;
    // SAFETY: valid C string, options and out pointer.
    check(unsafe {
        match bundle {
            false => fc_engine_create(path.as_ptr(), std::ptr::null(), &options, &mut handle),
            true => fc_engine_create_bundle(path.as_ptr(), &options, &mut handle),
        }
    })?;
    Ok(handle as jlong)
}

#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeCreate<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    model: JString<'l>,
    bundle: jni::sys::jboolean,
    mode: jint,
    threshold: jfloat,
    tile: jint,
    threads: jint,
    bypass: jni::sys::jboolean,
) -> jlong {
    run(&mut env, 0, |env| create(env, &model, bundle != 0, [mode, tile, threads], threshold, bypass != 0))
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_com_framecache_FrameCache_nativePushYuv<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    y: JByteBuffer<'l>,
    y_row_stride: jint,
    u: JByteBuffer<'l>,
    v: JByteBuffer<'l>,
    uv_row_stride: jint,
    uv_pixel_stride: jint,
    width: jint,
    height: jint,
    rotation: jint,
) {
    run(&mut env, (), |env| {
        let (w, h) = (non_negative(width, "width")? as usize, non_negative(height, "height")? as usize);
        let (yrs, uvrs, uvps) = (
            non_negative(y_row_stride, "yRowStride")?,
            non_negative(uv_row_stride, "uvRowStride")?,
            non_negative(uv_pixel_stride, "uvPixelStride")?,
        );
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let chroma = extent(cw, ch, uvrs as usize, uvps as usize);
        let frame = FcYuv420 {
            width: w as u32,
            height: h as u32,
            y: FcPlane { data: direct(env, &y, extent(w, h, yrs as usize, 1), "y")?, row_stride: yrs, pixel_stride: 1 },
            u: FcPlane { data: direct(env, &u, chroma, "u")?, row_stride: uvrs, pixel_stride: uvps },
            v: FcPlane { data: direct(env, &v, chroma, "v")?, row_stride: uvrs, pixel_stride: uvps },
            full_range: 0,
        };
        // SAFETY: each plane's buffer was checked to span what its strides imply.
        check(unsafe { fc_engine_push_yuv420(handle as FcEngine, &frame, non_negative(rotation, "rotation")?) })
    })
}

#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativePushRgba<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    rgba: JByteBuffer<'l>,
    width: jint,
    height: jint,
    row_stride: jint,
    rotation: jint,
) {
    run(&mut env, (), |env| {
        let (w, h, rs) =
            (non_negative(width, "width")?, non_negative(height, "height")?, non_negative(row_stride, "rowStride")?);
        let needed = extent(w as usize * 4, h as usize, rs as usize, 1);
        let data = direct(env, &rgba, needed, "rgba")?;
        // SAFETY: the buffer spans what the stride implies.
        check(unsafe {
            fc_engine_push_rgba(handle as FcEngine, data, w, h, rs, FC_PIXEL_RGBA, non_negative(rotation, "rotation")?)
        })
    })
}

#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeStats<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> jdoubleArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        let mut s = FcStats::default();
        // SAFETY: a valid out pointer.
        check(unsafe { fc_engine_stats(handle as FcEngine, &mut s) })?;
        let values = [
            s.frame_index as f64,
            s.cache_reset as f64,
            s.input_hit_rate,
            s.mac_saving,
            s.engine_ms,
            s.tile_rows as f64,
            s.tile_cols as f64,
            s.input_width as f64,
            s.input_height as f64,
            s.region_x as f64,
            s.region_y as f64,
            s.region_width as f64,
            s.region_height as f64,
            s.frame_width as f64,
            s.frame_height as f64,
            s.tile_size as f64,
        ];
        let array = env.new_double_array(values.len() as i32).map_err(jni_error)?;
        env.set_double_array_region(&array, 0, &values).map_err(jni_error)?;
        Ok(array.into_raw())
    })
}

#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeTileMap<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> jbyteArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        // SAFETY: `out` holds `capacity` bytes (or is null with 0).
        let map = listed(0u8, |out, capacity, n| unsafe { fc_engine_tile_map(handle as FcEngine, out, capacity, n) })?;
        let signed: Vec<i8> = map.iter().map(|&b| b as i8).collect();
        let array = env.new_byte_array(signed.len() as i32).map_err(jni_error)?;
        env.set_byte_array_region(&array, 0, &signed).map_err(jni_error)?;
        Ok(array.into_raw())
    })
}

/// Head `head`'s top classes, or none when it is not a classifier.
fn top_classes(handle: jlong, head: jint) -> JResult<Vec<FcClass>> {
    let head = non_negative(head, "head")?;
    let mut info = FcHeadInfo::default();
    // SAFETY: a valid out pointer.
    check(unsafe { fc_engine_head_info(handle as FcEngine, head, &mut info) })?;
    if info.kind != FC_HEAD_CLASSES {
        return Ok(Vec::new());
    }
    let blank = FcClass { index: 0, prob: 0.0, label: std::ptr::null() };
    // SAFETY: `out` holds `capacity` classes (or is null with 0).
    listed(blank, |out, capacity, n| unsafe { fc_engine_classes(handle as FcEngine, head, out, capacity, n) })
}

#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeTopLabels<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    head: jint,
) -> jobjectArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        let classes = top_classes(handle, head)?;
        let array = env
            .new_object_array(classes.len() as i32, "java/lang/String", jni::objects::JObject::null())
            .map_err(jni_error)?;
        for (i, c) in classes.iter().enumerate() {
            // SAFETY: labels stay valid while the engine lives.
            let label = unsafe { CStr::from_ptr(c.label) }.to_string_lossy();
            let s = env.new_string(label).map_err(jni_error)?;
            env.set_object_array_element(&array, i as i32, s).map_err(jni_error)?;
        }
        Ok(array.into_raw())
    })
}

fn float_array(env: &mut JNIEnv<'_>, values: &[f32]) -> JResult<jfloatArray> {
    let array = env.new_float_array(values.len() as i32).map_err(jni_error)?;
    env.set_float_array_region(&array, 0, values).map_err(jni_error)?;
    Ok(array.into_raw())
}

#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeTopScores<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    head: jint,
) -> jfloatArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        let scores: Vec<f32> = top_classes(handle, head)?.iter().map(|c| c.prob).collect();
        float_array(env, &scores)
    })
}

#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeMask<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    head: jint,
    size: JIntArray<'l>,
) -> jfloatArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        let head = non_negative(head, "head")?;
        let mut info = FcHeadInfo::default();
        // SAFETY: a valid out pointer.
        check(unsafe { fc_engine_head_info(handle as FcEngine, head, &mut info) })?;
        if info.kind != FC_HEAD_MASK {
            return Ok(std::ptr::null_mut());
        }
        let mut probs = vec![0f32; info.count as usize];
        let (mut w, mut h) = (0, 0);
        // SAFETY: `probs` holds `count` floats.
        check(unsafe { fc_engine_mask(handle as FcEngine, head, probs.as_mut_ptr(), probs.len(), &mut w, &mut h) })?;
        if !size.is_null() && env.get_array_length(&size).map_err(jni_error)? >= 2 {
            env.set_int_array_region(&size, 0, &[w as i32, h as i32]).map_err(jni_error)?;
        }
        float_array(env, &probs)
    })
}

#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeHeadCount<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> jint {
    run(&mut env, 0, |_| {
        let mut n = 0;
        // SAFETY: a valid out pointer.
        check(unsafe { fc_engine_head_count(handle as FcEngine, &mut n) })?;
        Ok(n as jint)
    })
}

/// Head `head`'s name, and `[kind, count, width, height, status]` with its MACs in `macs[0]`.
#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeHead<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    head: jint,
    fields: JIntArray<'l>,
) -> jni::sys::jstring {
    run(&mut env, std::ptr::null_mut(), |env| {
        let head = non_negative(head, "head")?;
        let mut info = FcHeadInfo::default();
        let mut st = FcHeadStatus { name: std::ptr::null(), status: 0, macs: 0, ms: 0.0 };
        // SAFETY: valid out pointers.
        check(unsafe { fc_engine_head_status(handle as FcEngine, head, &mut st) })?;
        // SAFETY: as above.
        check(unsafe { fc_engine_head_info(handle as FcEngine, head, &mut info) })?;
        if fields.is_null() || env.get_array_length(&fields).map_err(jni_error)? < 5 {
            return Err(Throw(ILLEGAL_ARGUMENT, "fields must hold 5 ints".into()));
        }
        let values = [info.kind, info.count, info.width, info.height, st.status].map(|v| v as jint);
        env.set_int_array_region(&fields, 0, &values).map_err(jni_error)?;
        // SAFETY: head names stay valid while the engine lives.
        let name = unsafe { CStr::from_ptr(st.name) }.to_string_lossy();
        Ok(env.new_string(name).map_err(jni_error)?.into_raw())
    })
}

/// A list accessor's values, asked for their size first.
fn listed<T: Copy>(blank: T, get: impl Fn(*mut T, usize, &mut usize) -> FcStatus) -> JResult<Vec<T>> {
    let mut needed = 0;
    let status = get(std::ptr::null_mut(), 0, &mut needed);
    if status != FcStatus::BufferTooSmall {
        check(status)?;
    }
    let mut values = vec![blank; needed];
    check(get(values.as_mut_ptr(), values.len(), &mut needed))?;
    Ok(values)
}

/// A list accessor's values of head `head` as one float array, `N` floats per value.
fn flat<T: Copy, const N: usize>(
    env: &mut JNIEnv<'_>,
    head: jint,
    blank: T,
    get: impl Fn(u32, *mut T, usize, &mut usize) -> FcStatus,
    fields: impl Fn(&T) -> [f32; N],
) -> JResult<jfloatArray> {
    let head = non_negative(head, "head")?;
    let values = listed(blank, |out, capacity, n| get(head, out, capacity, n))?;
    float_array(env, &values.iter().flat_map(fields).collect::<Vec<f32>>())
}

/// Head `head`'s boxes, 5 floats each: score, xmin, ymin, xmax, ymax (frame pixels).
#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeBoxes<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    head: jint,
) -> jfloatArray {
    let blank = FcBox { score: 0.0, xmin: 0.0, ymin: 0.0, xmax: 0.0, ymax: 0.0, keypoints: 0 };
    run(&mut env, std::ptr::null_mut(), |env| {
        // SAFETY: `out` holds `capacity` boxes (or is null with 0).
        let get =
            |head, out, capacity, n: &mut usize| unsafe { fc_engine_boxes(handle as FcEngine, head, out, capacity, n) };
        flat(env, head, blank, get, |b| [b.score, b.xmin, b.ymin, b.xmax, b.ymax])
    })
}

/// Head `head`'s landmarks, 4 floats each: x, y (frame pixels), z, visibility (−1: none).
#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeKeypoints<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
    head: jint,
) -> jfloatArray {
    let blank = FcKeypoint { x: 0.0, y: 0.0, z: 0.0, visibility: 0.0 };
    run(&mut env, std::ptr::null_mut(), |env| {
        // SAFETY: `out` holds `capacity` points (or is null with 0).
        let get = |head, out, capacity, n: &mut usize| unsafe {
            fc_engine_keypoints(handle as FcEngine, head, out, capacity, n)
        };
        flat(env, head, blank, get, |p| [p.x, p.y, p.z, p.visibility])
    })
}

#[no_mangle]
pub extern "system" fn Java_com_framecache_FrameCache_nativeDestroy<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    handle: jlong,
) {
    run(&mut env, (), |_| check(fc_engine_destroy(handle as FcEngine)))
}
