/* Host C harness for the framecache C ABI (built and run by tests/c_harness.rs, once plainly and
 * once under AddressSanitizer).
 *
 *   harness MODEL.onnx FRAMES.rgba BUNDLE.toml
 *
 * FRAMES.rgba: a text line "width height count stride\n", then `count` RGBA frames of
 * `stride * height` bytes. For every frame it prints one line:
 *   frame I hit H saving S dirty D top IDX:PROB IDX:PROB ... # TOP-1 LABEL
 * then runs a bundle (every head: its status, its info, the accessor of its kind) and prints
 *   bundle HEAD NAME status S kind K count N
 * per head, then runs the misuse cases and prints "misuse ok" when each returned the right status
 * with a message. Any unexpected status prints the last error and exits non-zero. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framecache.h"

static int failures = 0;

#define EXPECT(call, status)                                                                 \
    do {                                                                                     \
        FcStatus got_ = (call);                                                              \
        if (got_ != (status)) {                                                              \
            fprintf(stderr, "line %d: %s returned %d, expected %d (%s)\n", __LINE__, #call,  \
                    (int)got_, (int)(status), fc_last_error());                              \
            failures++;                                                                      \
        } else if ((status) != FC_STATUS_OK && fc_last_error()[0] == '\0') {                 \
            fprintf(stderr, "line %d: %s gave no error message\n", __LINE__, #call);         \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

static void misuse(const char *model, const unsigned char *frame, unsigned w, unsigned h,
                   unsigned stride) {
    FcEngine e = 0;
    FcOptions o;
    EXPECT(fc_options_default(&o), FC_STATUS_OK);
    EXPECT(fc_options_default(NULL), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_create(NULL, NULL, &o, &e), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_create(model, NULL, &o, NULL), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_create("/no/such/model.onnx", NULL, &o, &e), FC_STATUS_MODEL);
    EXPECT(fc_engine_create_from_bytes((const uint8_t *)"not onnx", 8, "[preprocess]\nfit = \"stretch\"\n",
                                       NULL, &o, &e),
           FC_STATUS_MODEL);
    o.mode = 7;
    EXPECT(fc_engine_create(model, NULL, &o, &e), FC_STATUS_INVALID_ARGUMENT);
    fc_options_default(&o);
    o.tile = 3;
    EXPECT(fc_engine_create(model, NULL, &o, &e), FC_STATUS_INVALID_ARGUMENT);
    fc_options_default(&o);
    o.threads = 1;
    EXPECT(fc_engine_create(model, NULL, &o, &e), FC_STATUS_OK);

    FcStats stats;
    size_t written = 0;
    EXPECT(fc_engine_stats(e, &stats), FC_STATUS_NO_RESULT);
    EXPECT(fc_engine_push_rgba(e, NULL, w, h, stride, FC_PIXEL_RGBA, 0), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_push_rgba(e, frame, w, h, w * 4 - 1, FC_PIXEL_RGBA, 0), FC_STATUS_INVALID_ARGUMENT);
    EXPECT(fc_engine_push_rgba(e, frame, 0, h, stride, FC_PIXEL_RGBA, 0), FC_STATUS_INVALID_ARGUMENT);
    EXPECT(fc_engine_push_rgba(e, frame, w, h, stride, 9, 0), FC_STATUS_INVALID_ARGUMENT);
    EXPECT(fc_engine_push_rgba(e, frame, w, h, stride, FC_PIXEL_RGBA, 45), FC_STATUS_INVALID_ARGUMENT);
    EXPECT(fc_engine_push_yuv420(e, NULL, 0), FC_STATUS_NULL_POINTER);
    FcYuv420 yuv;
    memset(&yuv, 0, sizeof yuv);
    yuv.width = 4;
    yuv.height = 4;
    EXPECT(fc_engine_push_yuv420(e, &yuv, 0), FC_STATUS_INVALID_ARGUMENT); /* strides 0 */
    EXPECT(fc_engine_push_rgba(e, frame, w, h, stride, FC_PIXEL_BGRA, 90), FC_STATUS_OK);
    EXPECT(fc_engine_stats(e, &stats), FC_STATUS_OK);
    if (stats.frame_width != h || stats.frame_height != w) {
        fprintf(stderr, "rotation: frame is %ux%u, expected %ux%u\n", stats.frame_width, stats.frame_height, h, w);
        failures++;
    }
    EXPECT(fc_engine_stats(e, NULL), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_tile_map(e, NULL, 0, &written), FC_STATUS_BUFFER_TOO_SMALL);
    if (written != (size_t)stats.tile_rows * stats.tile_cols) {
        fprintf(stderr, "tile map needs %zu bytes, expected %u\n", written, stats.tile_rows * stats.tile_cols);
        failures++;
    }
    FcClass classes[2];
    EXPECT(fc_engine_classes(e, 0, classes, 2, &written), FC_STATUS_BUFFER_TOO_SMALL);
    EXPECT(fc_engine_classes(e, 5, classes, 2, &written), FC_STATUS_INVALID_ARGUMENT);
    unsigned mw, mh;
    EXPECT(fc_engine_mask(e, 0, NULL, 0, &mw, &mh), FC_STATUS_INVALID_ARGUMENT); /* a classifier */

    /* Use after free and double free are detected, not undefined. */
    EXPECT(fc_engine_destroy(e), FC_STATUS_OK);
    EXPECT(fc_engine_destroy(e), FC_STATUS_INVALID_HANDLE);
    EXPECT(fc_engine_push_rgba(e, frame, w, h, stride, FC_PIXEL_RGBA, 0), FC_STATUS_INVALID_HANDLE);
    EXPECT(fc_engine_stats(e, &stats), FC_STATUS_INVALID_HANDLE);
    EXPECT(fc_engine_destroy(0), FC_STATUS_INVALID_HANDLE);
    EXPECT(fc_engine_stats(12345678, &stats), FC_STATUS_INVALID_HANDLE);
}

/* A bundle: every head through fc_engine_head_status and the accessor of its kind; then the
 * bundle calls' misuse. */
static void bundle(const char *manifest, const unsigned char *frame, unsigned w, unsigned h, unsigned stride) {
    FcEngine e = 0;
    FcOptions o;
    fc_options_default(&o);
    o.threads = 1;
    EXPECT(fc_engine_create_bundle(NULL, &o, &e), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_create_bundle(manifest, &o, NULL), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_create_bundle("/no/such/bundle.toml", &o, &e), FC_STATUS_MODEL);
    EXPECT(fc_engine_create_bundle(manifest, &o, &e), FC_STATUS_OK);
    uint32_t heads = 0;
    FcHeadStatus st;
    EXPECT(fc_engine_head_count(e, &heads), FC_STATUS_OK);
    EXPECT(fc_engine_head_status(e, 0, &st), FC_STATUS_NO_RESULT);
    EXPECT(fc_engine_push_rgba(e, frame, w, h, stride, FC_PIXEL_RGBA, 0), FC_STATUS_OK);
    for (uint32_t k = 0; k < heads; k++) {
        FcHeadInfo info;
        size_t n = 0;
        EXPECT(fc_engine_head_status(e, k, &st), FC_STATUS_OK);
        EXPECT(fc_engine_head_info(e, k, &info), FC_STATUS_OK);
        if (info.kind == FC_HEAD_CLASSES) {
            FcClass top[5];
            EXPECT(fc_engine_classes(e, k, top, 5, &n), FC_STATUS_OK);
            /* Not boxes, nor landmarks. */
            EXPECT(fc_engine_boxes(e, k, NULL, 0, &n), FC_STATUS_INVALID_ARGUMENT);
            EXPECT(fc_engine_box_keypoints(e, k, 0, NULL, 0, &n), FC_STATUS_INVALID_ARGUMENT);
            EXPECT(fc_engine_keypoints(e, k, NULL, 0, &n), FC_STATUS_INVALID_ARGUMENT);
        }
        printf("bundle %u %s status %u kind %u count %u macs %llu\n", k, st.name, st.status, info.kind, info.count,
               (unsigned long long)st.macs);
    }
    EXPECT(fc_engine_head_status(e, heads, &st), FC_STATUS_INVALID_ARGUMENT);
    EXPECT(fc_engine_head_status(e, 0, NULL), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_boxes(e, 0, NULL, 0, NULL), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_keypoints(e, heads, NULL, 0, NULL), FC_STATUS_NULL_POINTER);
    EXPECT(fc_engine_destroy(e), FC_STATUS_OK);
    EXPECT(fc_engine_head_status(e, 0, &st), FC_STATUS_INVALID_HANDLE);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.onnx FRAMES.rgba BUNDLE.toml\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    unsigned w, h, count, stride;
    if (!f || fscanf(f, "%u %u %u %u", &w, &h, &count, &stride) != 4 || fgetc(f) != '\n') {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 2;
    }
    size_t bytes = (size_t)stride * h;
    unsigned char *frame = malloc(bytes);

    FcOptions o;
    fc_options_default(&o);
    o.threads = 1;
    FcEngine e = 0;
    if (fc_engine_create(argv[1], NULL, &o, &e) != FC_STATUS_OK) {
        fprintf(stderr, "create: %s\n", fc_last_error());
        return 1;
    }
    uint32_t heads = 0;
    EXPECT(fc_engine_head_count(e, &heads), FC_STATUS_OK);
    printf("version %s heads %u\n", fc_version(), heads);
    for (unsigned i = 0; i < count; i++) {
        if (fread(frame, 1, bytes, f) != bytes) {
            fprintf(stderr, "frame %u is truncated\n", i);
            return 2;
        }
        if (fc_engine_push_rgba(e, frame, w, h, stride, FC_PIXEL_RGBA, 0) != FC_STATUS_OK) {
            fprintf(stderr, "push %u: %s\n", i, fc_last_error());
            return 1;
        }
        FcStats s;
        FcHeadInfo info;
        FcClass top[5];
        size_t n = 0;
        EXPECT(fc_engine_stats(e, &s), FC_STATUS_OK);
        EXPECT(fc_engine_head_info(e, 0, &info), FC_STATUS_OK);
        if (info.kind != FC_HEAD_CLASSES || info.count > 5) {
            fprintf(stderr, "head 0: kind %u count %u\n", info.kind, info.count);
            return 1;
        }
        EXPECT(fc_engine_classes(e, 0, top, 5, &n), FC_STATUS_OK);
        unsigned char *map = malloc((size_t)s.tile_rows * s.tile_cols);
        size_t tiles = 0, dirty = 0;
        EXPECT(fc_engine_tile_map(e, map, (size_t)s.tile_rows * s.tile_cols, &tiles), FC_STATUS_OK);
        for (size_t t = 0; t < tiles; t++) dirty += map[t];
        free(map);
        if (dirty != s.dirty_tiles) {
            fprintf(stderr, "tile map has %zu dirty tiles, stats %u\n", dirty, s.dirty_tiles);
            failures++;
        }
        printf("frame %u hit %.9f saving %.9f dirty %u top", i, s.input_hit_rate, s.mac_saving, s.dirty_tiles);
        for (size_t k = 0; k < n; k++) printf(" %u:%.9g", top[k].index, top[k].prob);
        printf(" # %s\n", n > 0 ? top[0].label : "");
    }
    EXPECT(fc_engine_destroy(e), FC_STATUS_OK);
    fclose(f);

    bundle(argv[3], frame, w, h, stride);
    misuse(argv[1], frame, w, h, stride);
    free(frame);
    if (failures) {
        fprintf(stderr, "%d misuse checks failed\n", failures);
        return 1;
    }
    printf("misuse ok\n");
    return 0;
}
