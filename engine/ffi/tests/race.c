/* Races on one engine handle, for ThreadSanitizer (built and run by .ci/tsan.sh against a
 * staticlib whose Rust side, std included, is instrumented too).
 *
 *   race MODEL.onnx
 *
 * 1. Two threads push frames into one handle at once and read its stats, classes and tile map
 *    between pushes: every call returns FC_STATUS_OK.
 * 2. One thread pushes in a loop while the main thread destroys the handle: each push returns
 *    OK (it ran before the destroy, or held the engine while it was destroyed) or
 *    FC_STATUS_INVALID_HANDLE (after), never anything else, and no push is OK after an
 *    INVALID_HANDLE.
 * 3. Two threads destroy one handle at once: exactly one gets OK, the other INVALID_HANDLE.
 *
 * Frames are synthetic (a bright square that moves over a gradient), so that the cache both
 * reuses and recomputes. Prints "race ok" when every check held; TSan's own reports fail the
 * run through its exit code. Built with -DSEED_RACE it first races on a plain int, which TSan
 * must report. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framecache.h"

enum { W = 96, H = 72, STRIDE = W * 4, PUSHES = 6, LOOP = 200 };

static atomic_int failures;

#ifdef SEED_RACE
/* A deliberate data race, before any engine exists: .ci/tsan.sh builds the harness once with
 * it, to check that TSan is live in this binary (its runtime linked, C calls instrumented). */
static int unguarded;

static void *race_on_unguarded(void *arg) {
    (void)arg;
    for (unsigned k = 0; k < 100000; k++) unguarded++;
    return NULL;
}
#endif

static void check(int ok, const char *what, FcStatus got) {
    if (!ok) {
        fprintf(stderr, "%s: status %d (%s)\n", what, (int)got, fc_last_error());
        atomic_fetch_add(&failures, 1);
    }
}

/* Frame `i`: a gradient with a 16x16 square at a position that moves with `i`. */
static void draw(unsigned char *px, unsigned i) {
    unsigned sx = (i * 7) % (W - 16), sy = (i * 5) % (H - 16);
    for (unsigned y = 0; y < H; y++) {
        for (unsigned x = 0; x < W; x++) {
            unsigned char *p = px + y * STRIDE + x * 4;
            int in = x >= sx && x < sx + 16 && y >= sy && y < sy + 16;
            p[0] = in ? 250 : (unsigned char)(x * 2);
            p[1] = in ? 240 : (unsigned char)(y * 3);
            p[2] = in ? 10 : 128;
            p[3] = 255;
        }
    }
}

struct pusher {
    FcEngine engine;
    unsigned seed;
};

static void *push_and_read(void *arg) {
    struct pusher *p = arg;
    unsigned char *px = malloc((size_t)STRIDE * H);
    for (unsigned i = 0; i < PUSHES; i++) {
        draw(px, p->seed + i);
        FcStatus s = fc_engine_push_rgba(p->engine, px, W, H, STRIDE, FC_PIXEL_RGBA, 0);
        check(s == FC_STATUS_OK, "concurrent push", s);
        FcStats stats;
        s = fc_engine_stats(p->engine, &stats);
        check(s == FC_STATUS_OK, "concurrent stats", s);
        FcClass top[5];
        size_t n = 0;
        s = fc_engine_classes(p->engine, 0, top, 5, &n);
        check(s == FC_STATUS_OK && n > 0, "concurrent classes", s);
        unsigned char map[4096];
        size_t tiles = 0;
        s = fc_engine_tile_map(p->engine, map, sizeof map, &tiles);
        check(s == FC_STATUS_OK, "concurrent tile map", s);
    }
    free(px);
    return NULL;
}

struct looper {
    FcEngine engine;
    atomic_int started;
    int ok_after_invalid;
    int other;
};

static void *push_until_destroyed(void *arg) {
    struct looper *l = arg;
    unsigned char *px = malloc((size_t)STRIDE * H);
    int invalid = 0;
    for (unsigned i = 0; i < LOOP; i++) {
        draw(px, i);
        FcStatus s = fc_engine_push_rgba(l->engine, px, W, H, STRIDE, FC_PIXEL_RGBA, 0);
        atomic_store(&l->started, 1);
        if (s == FC_STATUS_INVALID_HANDLE) {
            invalid = 1;
        } else if (s == FC_STATUS_OK) {
            l->ok_after_invalid += invalid;
        } else {
            fprintf(stderr, "push racing destroy: status %d (%s)\n", (int)s, fc_last_error());
            l->other++;
        }
        if (invalid && i % 8 == 7) break;
    }
    free(px);
    return NULL;
}

struct destroyer {
    FcEngine engine;
    FcStatus status;
};

static void *destroy(void *arg) {
    struct destroyer *d = arg;
    d->status = fc_engine_destroy(d->engine);
    return NULL;
}

/* Runs `f(a)` and `f(b)` at once, on two threads, and waits for both. */
static void in_two_threads(void *(*f)(void *), void *a, void *b) {
    pthread_t ta, tb;
    pthread_create(&ta, NULL, f, a);
    pthread_create(&tb, NULL, f, b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
}

static FcEngine create(const char *model) {
    FcOptions o;
    fc_options_default(&o);
    o.mode = FC_MODE_THRESHOLD;
    o.threads = 2; /* the engine's own worker pool runs under TSan too */
    FcEngine e = 0;
    FcStatus s = fc_engine_create(model, NULL, &o, &e);
    if (s != FC_STATUS_OK) {
        fprintf(stderr, "create: %s\n", fc_last_error());
        exit(1);
    }
    return e;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.onnx\n", argv[0]);
        return 2;
    }

#ifdef SEED_RACE
    in_two_threads(race_on_unguarded, NULL, NULL);
#endif

    /* 1. Two pushers on one handle. */
    FcEngine e = create(argv[1]);
    struct pusher a = {e, 0}, b = {e, 100};
    in_two_threads(push_and_read, &a, &b);
    FcStatus s = fc_engine_destroy(e);
    check(s == FC_STATUS_OK, "destroy after the pushers", s);

    /* 2. Destroy racing a pushing thread. */
    struct looper l = {create(argv[1]), 0, 0, 0};
    pthread_t tl;
    pthread_create(&tl, NULL, push_until_destroyed, &l);
    while (!atomic_load(&l.started)) {
    }
    s = fc_engine_destroy(l.engine);
    check(s == FC_STATUS_OK, "destroy racing a push", s);
    pthread_join(tl, NULL);
    check(l.other == 0, "pushes racing destroy returned only OK or INVALID_HANDLE", FC_STATUS_OK);
    check(l.ok_after_invalid == 0, "no push is OK after the handle was destroyed", FC_STATUS_OK);

    /* 3. Two destroys of one handle. */
    FcEngine twice = create(argv[1]);
    struct destroyer d1 = {twice, 0}, d2 = {twice, 0};
    in_two_threads(destroy, &d1, &d2);
    int oks = (d1.status == FC_STATUS_OK) + (d2.status == FC_STATUS_OK);
    int invalids = (d1.status == FC_STATUS_INVALID_HANDLE) + (d2.status == FC_STATUS_INVALID_HANDLE);
    check(oks == 1 && invalids == 1, "racing destroys: one OK, one INVALID_HANDLE", d1.status);

    if (atomic_load(&failures)) {
        fprintf(stderr, "%d race checks failed\n", atomic_load(&failures));
        return 1;
    }
    printf("race ok\n");
    return 0;
}
