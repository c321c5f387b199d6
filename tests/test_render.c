/* The heatmap pictures of src/image/render.c (docs/method.md §6):
 *  - the JET table, all 256 entries, against tests/data/render/jet_rgb.txt
 *    (derived independently by tools/reference_overlay.py) and a few
 *    entries against cv2.applyColorMap(COLORMAP_JET) of OpenCV 4.6;
 *  - bilinear upsampling (half-pixel centres, edge clamp) by hand;
 *  - constant maps and inputs (no NaN);
 *  - the oracle case fmnist_vit_s__timm17, input 0, class 6: overlay and
 *    heatmap of transformer_attribution (8 x 8 grid, patch 8) and lrp_full
 *    (64 x 64 pixel map), and the input, against the PNGs written by
 *    tools/reference_overlay.py: max channel difference <= 1;
 *  - the panel's layout, nearest scaling and captions;
 *  - argument errors. */
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

#include "relprop/relprop.h"

#define RENDER_DATA RELPROP_SOURCE_DIR "/tests/data/render/"
#define ORACLE_CASE RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17/"

/* ---- helpers ---- */

static const uint8_t *pixel(const rp_image *im, int x, int y)
{
    return im->pixels + ((size_t)y * (size_t)im->width + (size_t)x) * (size_t)im->channels;
}

/* A float32 tensor of the given shape holding vals (copied). */
static rp_tensor tensor_of(int rank, const int64_t *dims, const float *vals)
{
    rp_tensor t = {0};
    rp_error err = {0};
    ck_assert_msg(rp_tensor_alloc(&t, RP_FLOAT, rank, dims, &err) == RP_OK, "%s", err.msg);
    if (vals)
        memcpy(t.data, vals, sizeof(float) * (size_t)t.count);
    return t;
}

/* The JET table as tools/reference_overlay.py derived it. */
static void load_jet(uint8_t jet[256][3])
{
    FILE *f = fopen(RENDER_DATA "jet_rgb.txt", "r");
    ck_assert_msg(f != NULL, "cannot open %s", RENDER_DATA "jet_rgb.txt");
    for (int i = 0; i < 256; i++) {
        int r, g, b;
        ck_assert_msg(fscanf(f, "%d %d %d", &r, &g, &b) == 3, "jet_rgb.txt: line %d", i + 1);
        jet[i][0] = (uint8_t)r;
        jet[i][1] = (uint8_t)g;
        jet[i][2] = (uint8_t)b;
    }
    fclose(f);
}

/* The largest channel difference between im and the PNG at path. */
static int max_diff_png(const rp_image *im, const char *path)
{
    int w, h, c;
    unsigned char *ref = stbi_load(path, &w, &h, &c, 3);
    ck_assert_msg(ref != NULL, "cannot read %s: %s", path, stbi_failure_reason());
    ck_assert_msg(w == im->width && h == im->height && im->channels == 3, "%s: %dx%d, rendered %dx%dx%d", path, w,
                  h, im->width, im->height, im->channels);
    int worst = 0;
    for (size_t i = 0; i < (size_t)w * (size_t)h * 3; i++) {
        int d = abs((int)ref[i] - (int)im->pixels[i]);
        worst = d > worst ? d : worst;
    }
    stbi_image_free(ref);
    return worst;
}

/* The heatmap of a 1 x n map, patch (1, f): one row of colours. */
static void heat_row(const float *vals, int n, int f, rp_image *out)
{
    int64_t dims[2] = {1, n};
    rp_tensor m = tensor_of(2, dims, vals);
    rp_error err = {0};
    ck_assert_msg(rp_render_heatmap(&m, 1, f, out, &err) == RP_OK, "%s", err.msg);
    rp_tensor_release(&m);
}

/* ---- JET ---- */

START_TEST(test_jet_table)
{
    /* 0..255 min-max normalises to i/255 and 255 * (i/255) truncates back to
     * i in float32 for every i, so pixel i shows JET entry i. */
    float ramp[256];
    for (int i = 0; i < 256; i++)
        ramp[i] = (float)i;
    rp_image im;
    heat_row(ramp, 256, 1, &im);
    ck_assert_int_eq(im.width, 256);
    ck_assert_int_eq(im.height, 1);
    ck_assert_int_eq(im.channels, 3);

    uint8_t jet[256][3];
    load_jet(jet);
    for (int i = 0; i < 256; i++)
        ck_assert_msg(!memcmp(pixel(&im, i, 0), jet[i], 3), "JET[%d] = (%d,%d,%d), reference (%d,%d,%d)", i,
                      pixel(&im, i, 0)[0], pixel(&im, i, 0)[1], pixel(&im, i, 0)[2], jet[i][0], jet[i][1], jet[i][2]);

    /* cv2.applyColorMap(np.arange(256, dtype=np.uint8), cv2.COLORMAP_JET),
     * OpenCV 4.6, reversed from BGR to RGB. */
    static const struct { int i; uint8_t rgb[3]; } known[] = {
        {0, {0, 0, 128}},     {1, {0, 0, 132}},     {32, {0, 0, 255}},     {64, {0, 128, 255}},
        {96, {2, 255, 254}},  {127, {126, 255, 130}}, {128, {130, 255, 126}}, {159, {254, 255, 1}},
        {160, {255, 252, 0}}, {192, {255, 124, 0}}, {224, {252, 0, 0}},    {255, {128, 0, 0}},
    };
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        const uint8_t *p = pixel(&im, known[k].i, 0);
        ck_assert_msg(!memcmp(p, known[k].rgb, 3), "JET[%d] = (%d,%d,%d), OpenCV (%d,%d,%d)", known[k].i, p[0], p[1],
                      p[2], known[k].rgb[0], known[k].rgb[1], known[k].rgb[2]);
    }
    rp_image_release(&im);
}
END_TEST

/* ---- upsampling ---- */

/* [[0, 1], [2, 3]] by 2: along each axis the output coordinates 0..3 map to
 * src = (d + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (index
 * 1, the last: its right neighbour is itself), so each row becomes
 * [a, .75a + .25b, .25a + .75b, b] and the 4 x 4 result is
 *     0    .25  .75  1
 *    .5    .75 1.25 1.5
 *   1.5   1.75 2.25 2.5
 *    2    2.25 2.75  3
 * Normalised by 3 and times 255: v * 85, truncated. */
START_TEST(test_bilinear_2x2_by_2)
{
    static const float m22[4] = {0, 1, 2, 3};
    static const double want[4][4] = {
        {0, .25, .75, 1}, {.5, .75, 1.25, 1.5}, {1.5, 1.75, 2.25, 2.5}, {2, 2.25, 2.75, 3}};
    int64_t dims[2] = {2, 2};
    rp_tensor m = tensor_of(2, dims, m22);
    rp_error err = {0};
    rp_image im;
    ck_assert_msg(rp_render_heatmap(&m, 2, 2, &im, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(im.width, 4);
    ck_assert_int_eq(im.height, 4);
    uint8_t jet[256][3];
    load_jet(jet);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            int idx = (int)floor(want[y][x] * 85.0);
            ck_assert_msg(!memcmp(pixel(&im, x, y), jet[idx], 3), "(%d,%d): want JET[%d] for value %g", y, x, idx,
                          want[y][x]);
        }
    rp_image_release(&im);
    rp_tensor_release(&m);
}
END_TEST

/* [0, 1] by 3: src = (d + 0.5) / 3 - 0.5 = -1/3 (-> 0), 0, 1/3, 2/3, 1, 4/3
 * (index 1, clamped): values 0, 0, 1/3, 2/3, 1, 1 -> JET indices 0, 0, 85,
 * 170, 255, 255. A non-power-of-two factor and both edges. */
START_TEST(test_bilinear_by_3_edges)
{
    static const float m2[2] = {0, 1};
    static const int want[6] = {0, 0, 85, 170, 255, 255};
    rp_image im;
    heat_row(m2, 2, 3, &im);
    ck_assert_int_eq(im.width, 6);
    uint8_t jet[256][3];
    load_jet(jet);
    for (int x = 0; x < 6; x++)
        ck_assert_msg(!memcmp(pixel(&im, x, 0), jet[want[x]], 3), "x=%d: want JET[%d]", x, want[x]);
    rp_image_release(&im);
}
END_TEST

/* ---- constant maps and inputs ---- */

START_TEST(test_constant_map)
{
    /* A constant map normalises to zeros (the notebook's 0/0 would be NaN):
     * the heat is JET[0] = (0, 0, 128) everywhere and the overlay is the
     * plain image plus that blue, divided by the maximum. */
    enum { H = 16, W = 16 };
    static float x[3 * H * W];
    for (int i = 0; i < 3 * H * W; i++)
        x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    int64_t xd[4] = {1, 3, H, W}, md[2] = {4, 4};
    rp_tensor in = tensor_of(4, xd, x), m = tensor_of(2, md, NULL);
    for (int i = 0; i < 16; i++)
        ((float *)m.data)[i] = 0.25f;
    rp_error err = {0};
    rp_image ov, hm;
    ck_assert_msg(rp_render_overlay(&in, &m, 4, 4, &ov, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_render_heatmap(&m, 4, 4, &hm, &err) == RP_OK, "%s", err.msg);

    float lo = x[0], hi = x[0];
    for (int i = 0; i < 3 * H * W; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    static float cam[H * W * 3];
    float top = 0;
    const float heat[3] = {0.0f, 0.0f, 128.0f / 255.0f};
    for (int p = 0; p < H * W; p++)
        for (int c = 0; c < 3; c++) {
            cam[p * 3 + c] = heat[c] + (x[c * H * W + p] - lo) / (hi - lo);
            top = cam[p * 3 + c] > top ? cam[p * 3 + c] : top;
        }
    for (int p = 0; p < H * W; p++) {
        ck_assert(!memcmp(hm.pixels + p * 3, (uint8_t[3]){0, 0, 128}, 3));
        for (int c = 0; c < 3; c++)
            ck_assert_int_eq(ov.pixels[p * 3 + c], (uint8_t)(255.0f * (cam[p * 3 + c] / top)));
    }
    rp_image_release(&ov);
    rp_image_release(&hm);

    /* Constant input and constant map: the image scales to zeros, the heat
     * is (0, 0, 128/255), divided by its maximum: pure blue. */
    for (int i = 0; i < 3 * H * W; i++)
        ((float *)in.data)[i] = 0.5f;
    ck_assert_msg(rp_render_overlay(&in, &m, 4, 4, &ov, &err) == RP_OK, "%s", err.msg);
    for (int p = 0; p < H * W; p++)
        ck_assert(!memcmp(ov.pixels + p * 3, (uint8_t[3]){0, 0, 255}, 3));
    rp_image_release(&ov);
    rp_image in_im;
    ck_assert_msg(rp_render_input(&in, &in_im, &err) == RP_OK, "%s", err.msg);
    for (int i = 0; i < H * W * 3; i++)
        ck_assert_int_eq(in_im.pixels[i], 0);
    rp_image_release(&in_im);
    rp_tensor_release(&in);
    rp_tensor_release(&m);
}
END_TEST

START_TEST(test_gray_input)
{
    /* (1, 1, H, W): the one channel is repeated, as numpy broadcasts. */
    float x[4] = {-1, 0, 1, 3};
    int64_t xd[4] = {1, 1, 2, 2};
    rp_tensor in = tensor_of(4, xd, x);
    rp_error err = {0};
    rp_image im;
    ck_assert_msg(rp_render_input(&in, &im, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(im.channels, 3);
    static const uint8_t want[4] = {0, 63, 127, 255}; /* 255 * (x + 1) / 4, truncated */
    for (int p = 0; p < 4; p++)
        for (int c = 0; c < 3; c++)
            ck_assert_int_eq(im.pixels[p * 3 + c], want[p]);
    rp_image_release(&im);
    rp_tensor_release(&in);
}
END_TEST

/* ---- the oracle case against tools/reference_overlay.py ---- */

START_TEST(test_reference_pictures)
{
    rp_error err = {0};
    rp_tensor x = {0}, ta = {0}, lrp = {0};
    ck_assert_msg(rp_npy_read(ORACLE_CASE "inputs/input_0.npy", &x, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_npy_read(ORACLE_CASE "expected/input_0/class_6/transformer_attribution.npy", &ta, &err) == RP_OK,
                  "%s", err.msg);
    ck_assert_msg(rp_npy_read(ORACLE_CASE "expected/input_0/class_6/lrp_full.npy", &lrp, &err) == RP_OK, "%s",
                  err.msg);
    /* The oracle stores the patch map flat (64,): it is the 8 x 8 grid. */
    ck_assert_int_eq(ta.count, 64);
    ta.rank = 2;
    ta.dims[0] = 8;
    ta.dims[1] = 8;

    struct {
        const char *png;
        rp_image im;
    } pics[5];
    ck_assert_msg(rp_render_overlay(&x, &ta, 8, 8, &pics[0].im, &err) == RP_OK, "%s", err.msg);
    pics[0].png = RENDER_DATA "overlay_transformer_attribution.png";
    ck_assert_msg(rp_render_heatmap(&ta, 8, 8, &pics[1].im, &err) == RP_OK, "%s", err.msg);
    pics[1].png = RENDER_DATA "heatmap_transformer_attribution.png";
    /* lrp_full is image-sized: used as is although the patch is 8 */
    ck_assert_msg(rp_render_overlay(&x, &lrp, 8, 8, &pics[2].im, &err) == RP_OK, "%s", err.msg);
    pics[2].png = RENDER_DATA "overlay_lrp_full.png";
    ck_assert_msg(rp_render_heatmap(&lrp, 1, 1, &pics[3].im, &err) == RP_OK, "%s", err.msg);
    pics[3].png = RENDER_DATA "heatmap_lrp_full.png";
    ck_assert_msg(rp_render_input(&x, &pics[4].im, &err) == RP_OK, "%s", err.msg);
    pics[4].png = RENDER_DATA "input.png";

    int worst = 0;
    for (int i = 0; i < 5; i++) {
        int d = max_diff_png(&pics[i].im, pics[i].png);
        printf("render reference: %-40s %dx%d max channel difference %d\n", strrchr(pics[i].png, '/') + 1,
               pics[i].im.width, pics[i].im.height, d);
        worst = d > worst ? d : worst;
    }
    ck_assert_msg(worst <= 1, "max channel difference %d against tools/reference_overlay.py", worst);
    for (int i = 0; i < 5; i++)
        rp_image_release(&pics[i].im);
    rp_tensor_release(&x);
    rp_tensor_release(&ta);
    rp_tensor_release(&lrp);
}
END_TEST

/* ---- panel ---- */

/* A w x h tile: gray (channels 1) or RGB with a position-dependent pattern. */
static rp_image make_tile(int w, int h, int channels, int seed)
{
    rp_image t = {.width = w, .height = h, .channels = channels};
    t.pixels = malloc((size_t)w * (size_t)h * (size_t)channels);
    ck_assert(t.pixels != NULL);
    for (int i = 0; i < w * h * channels; i++)
        t.pixels[i] = (uint8_t)(i * 7 + seed * 51);
    return t;
}

/* Dark pixels (all channels < 128) in the rectangle [x0, x1) x [y0, y1). */
static int count_ink(const rp_image *im, int x0, int y0, int x1, int y1)
{
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            const uint8_t *p = pixel(im, x, y);
            n += p[0] < 128 && p[1] < 128 && p[2] < 128;
        }
    return n;
}

START_TEST(test_panel_layout)
{
    /* Three 64 x 64 tiles, min_tile 256: factor 4. Layout (render.c): an
     * 8-pixel gap around and between tiles, a caption band of 4 + 10 pixels
     * at font scale 1 under them: 8 + 3 * (256 + 8) = 800 wide,
     * 8 + 256 + 14 + 8 = 286 high. */
    rp_image tiles[3] = {make_tile(64, 64, 3, 0), make_tile(64, 64, 1, 1), make_tile(64, 64, 3, 2)};
    const char *caps[3] = {"Shirt (6) \xc2\xb7 transformer_attribution", NULL, "input"};
    rp_error err = {0};
    rp_image p;
    ck_assert_msg(rp_render_panel(tiles, caps, 3, 256, &p, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(p.width, 800);
    ck_assert_int_eq(p.height, 286);
    ck_assert_int_eq(p.channels, 3);

    /* nearest-neighbour scaling by 4; gray tiles repeat their channel */
    for (int t = 0; t < 3; t++) {
        int x0 = 8 + t * 264;
        for (int y = 0; y < 256; y += 3)
            for (int x = 0; x < 256; x += 5) {
                const uint8_t *got = pixel(&p, x0 + x, 8 + y);
                const uint8_t *src = pixel(&tiles[t], x / 4, y / 4);
                for (int c = 0; c < 3; c++)
                    ck_assert_int_eq(got[c], src[tiles[t].channels == 1 ? 0 : c]);
            }
    }
    /* white gaps */
    for (int y = 0; y < p.height; y++)
        ck_assert(!memcmp(pixel(&p, 8 + 256 + 3, y), (uint8_t[3]){255, 255, 255}, 3));
    for (int x = 0; x < p.width; x++)
        ck_assert(!memcmp(pixel(&p, x, 4), (uint8_t[3]){255, 255, 255}, 3));

    /* captions: ink under tiles 0 and 2, none under tile 1 (no caption),
     * none outside the caption band */
    int band0 = 8 + 256, band1 = p.height;
    int ink0 = count_ink(&p, 8, band0, 8 + 256, band1);
    int ink1 = count_ink(&p, 8 + 264, band0, 8 + 264 + 256, band1);
    int ink2 = count_ink(&p, 8 + 528, band0, 8 + 528 + 256, band1);
    ck_assert_msg(ink0 > 100, "caption 0: %d dark pixels", ink0);
    ck_assert_int_eq(ink1, 0);
    ck_assert_msg(ink2 > 20, "caption 2: %d dark pixels", ink2);
    ck_assert_int_eq(count_ink(&p, 0, band1 - 8, p.width, band1), 0); /* bottom gap */
    /* the long caption fits in 256 pixels: its ink stays inside the tile's columns */
    ck_assert_int_eq(count_ink(&p, 0, band0, 8, band1), 0);
    ck_assert_int_eq(count_ink(&p, 8 + 256, band0, 8 + 264, band1), 0);

    rp_image_release(&p);
    for (int t = 0; t < 3; t++)
        rp_image_release(&tiles[t]);
}
END_TEST

START_TEST(test_panel_captions_truncated)
{
    /* A 64-pixel tile (min_tile 0: no scaling) holds about ten glyphs: a long
     * caption is cut and ends in "...", its ink stays in the tile's columns;
     * a caption of non-ASCII and control characters draws '?'s. */
    rp_image tiles[2] = {make_tile(64, 64, 3, 0), make_tile(64, 64, 3, 1)};
    const char *caps[2] = {"a very long caption that cannot fit under a small tile",
                           "\xe2\x82\xac\t\xf0\x9f\x98\x80"};
    rp_error err = {0};
    rp_image p;
    ck_assert_msg(rp_render_panel(tiles, caps, 2, 0, &p, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(p.width, 8 + 2 * (64 + 8));
    ck_assert_int_eq(p.height, 8 + 64 + 14 + 8);
    int band0 = 8 + 64, band1 = p.height;
    ck_assert_int_eq(count_ink(&p, 0, band0, 8, band1), 0);
    ck_assert_int_eq(count_ink(&p, 8 + 64, band0, 8 + 72, band1), 0);
    /* the cut caption is drawn exactly as some prefix of it plus "..." */
    bool found = false;
    size_t len = strlen(caps[0]);
    for (size_t k = 1; k < len && !found; k++) {
        char cut[128];
        snprintf(cut, sizeof cut, "%.*s...", (int)k, caps[0]);
        const char *caps_k[1] = {cut};
        rp_image q;
        ck_assert_msg(rp_render_panel(tiles, caps_k, 1, 0, &q, &err) == RP_OK, "%s", err.msg);
        /* compare the caption band under tile 0 */
        found = true;
        for (int y = band0; y < band1 && found; y++)
            found = !memcmp(pixel(&p, 8, y), pixel(&q, 8, y), 64 * 3);
        if (found)
            printf("render panel: \"%s\" drawn as \"%s\"\n", caps[0], cut);
        rp_image_release(&q);
    }
    ck_assert_msg(found, "the long caption is not drawn as a prefix + \"...\"");
    /* three '?' glyphs (euro, tab, emoji) */
    int ink = count_ink(&p, 8 + 72, band0, 8 + 72 + 64, band1);
    ck_assert_msg(ink > 0, "no ink for the '?' caption");

    /* the same caption as three explicit '?': identical pixels */
    rp_image q;
    const char *caps_q[2] = {caps[0], "???"};
    ck_assert_msg(rp_render_panel(tiles, caps_q, 2, 0, &q, &err) == RP_OK, "%s", err.msg);
    ck_assert(!memcmp(p.pixels, q.pixels, (size_t)p.width * (size_t)p.height * 3));
    rp_image_release(&q);

    /* U+00B7, the separator of relprop's captions, has its own dot, not '?' */
    const char *dot[1] = {"a \xc2\xb7 b"}, *qm[1] = {"a ? b"};
    rp_image pd, pq;
    ck_assert_msg(rp_render_panel(tiles, dot, 1, 0, &pd, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_render_panel(tiles, qm, 1, 0, &pq, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(pd.width, pq.width);
    ck_assert(memcmp(pd.pixels, pq.pixels, (size_t)pd.width * (size_t)pd.height * 3) != 0);
    ck_assert_int_gt(count_ink(&pd, 8, band0, 8 + 64, band1), 0);
    rp_image_release(&pd);
    rp_image_release(&pq);

    /* no captions at all: no band */
    ck_assert_msg(rp_render_panel(tiles, NULL, 2, 100, &q, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(q.height, 8 + 128 + 8); /* factor ceil(100 / 64) = 2 */
    ck_assert_int_eq(q.width, 8 + 2 * (128 + 8));
    rp_image_release(&q);
    rp_image_release(&p);
    rp_image_release(&tiles[0]);
    rp_image_release(&tiles[1]);
}
END_TEST

/* ---- errors ---- */

static void expect_fail(rp_status got, rp_status want, const rp_error *err, const rp_image *out, const char *what)
{
    ck_assert_msg(got == want, "%s: got status %d (%s), want %d", what, got, err->msg, want);
    ck_assert_msg(err->msg[0] != 0, "%s: no message", what);
    ck_assert_msg(out->pixels == NULL && out->width == 0 && out->height == 0, "%s: out not cleared", what);
}

START_TEST(test_errors)
{
    rp_error err;
    rp_image out;
    int64_t xd[4] = {1, 3, 64, 64}, md[2] = {8, 8};
    rp_tensor x = tensor_of(4, xd, NULL), m = tensor_of(2, md, NULL);
    for (int i = 0; i < 64; i++)
        ((float *)m.data)[i] = (float)i;

    /* the map does not tile the input: 7 x 8 grid by patch 8 is 56 x 64 */
    int64_t md78[2] = {7, 8};
    rp_tensor m78 = tensor_of(2, md78, NULL);
    memset(&err, 0, sizeof err);
    expect_fail(rp_render_overlay(&x, &m78, 8, 8, &out, &err), RP_ERR_SHAPE, &err, &out, "7x8 map");
    ck_assert_msg(strstr(err.msg, "64 x 64") != NULL, "message should name the input size: %s", err.msg);
    /* right grid, wrong patch */
    expect_fail(rp_render_overlay(&x, &m, 7, 8, &out, &err), RP_ERR_SHAPE, &err, &out, "patch 7");
    /* flat map */
    int64_t md64[1] = {64};
    rp_tensor flat = tensor_of(1, md64, NULL);
    expect_fail(rp_render_overlay(&x, &flat, 8, 8, &out, &err), RP_ERR_SHAPE, &err, &out, "1-D map");
    expect_fail(rp_render_heatmap(&flat, 8, 8, &out, &err), RP_ERR_SHAPE, &err, &out, "1-D map heatmap");
    /* bad patch */
    expect_fail(rp_render_overlay(&x, &m, 0, 8, &out, &err), RP_ERR_ARG, &err, &out, "patch 0");
    expect_fail(rp_render_heatmap(&m, 8, -1, &out, &err), RP_ERR_ARG, &err, &out, "patch -1");
    /* NaN in the map */
    ((float *)m78.data)[5] = NAN;
    expect_fail(rp_render_heatmap(&m78, 8, 8, &out, &err), RP_ERR_VALUE, &err, &out, "NaN map");
    /* wrong dtype */
    rp_tensor im = {0};
    ck_assert(rp_tensor_alloc(&im, RP_INT64, 2, md, &err) == RP_OK);
    expect_fail(rp_render_heatmap(&im, 8, 8, &out, &err), RP_ERR_DTYPE, &err, &out, "int64 map");
    /* input: batch 2, 4 channels, NULL */
    int64_t xb[4] = {2, 3, 64, 64}, xc[4] = {1, 4, 64, 64};
    rp_tensor x2 = tensor_of(4, xb, NULL), x4 = tensor_of(4, xc, NULL);
    expect_fail(rp_render_overlay(&x2, &m, 8, 8, &out, &err), RP_ERR_SHAPE, &err, &out, "batch 2");
    expect_fail(rp_render_input(&x4, &out, &err), RP_ERR_SHAPE, &err, &out, "4 channels");
    expect_fail(rp_render_input(NULL, &out, &err), RP_ERR_ARG, &err, &out, "NULL input");
    expect_fail(rp_render_heatmap(NULL, 8, 8, &out, &err), RP_ERR_ARG, &err, &out, "NULL map");
    ck_assert_int_eq(rp_render_heatmap(&m, 8, 8, NULL, &err), RP_ERR_ARG);
    ck_assert_int_eq(rp_render_heatmap(&m, 8, 8, NULL, NULL), RP_ERR_ARG); /* err may be NULL */

    /* panel: zero tiles, NULL tiles, an empty tile, unequal heights */
    rp_image tiles[2] = {make_tile(8, 8, 3, 0), make_tile(8, 9, 3, 1)};
    expect_fail(rp_render_panel(tiles, NULL, 0, 64, &out, &err), RP_ERR_ARG, &err, &out, "zero tiles");
    expect_fail(rp_render_panel(NULL, NULL, 2, 64, &out, &err), RP_ERR_ARG, &err, &out, "NULL tiles");
    rp_image empty = {0};
    expect_fail(rp_render_panel(&empty, NULL, 1, 64, &out, &err), RP_ERR_ARG, &err, &out, "empty tile");
    rp_image two_ch = tiles[0];
    two_ch.channels = 2;
    expect_fail(rp_render_panel(&two_ch, NULL, 1, 64, &out, &err), RP_ERR_ARG, &err, &out, "2-channel tile");
    expect_fail(rp_render_panel(tiles, NULL, 2, 64, &out, &err), RP_ERR_ARG, &err, &out, "unequal heights");
    /* absurd sizes fail cleanly */
    expect_fail(rp_render_panel(tiles, NULL, 1, 2000000000, &out, &err), RP_ERR_SHAPE, &err, &out, "huge panel");

    rp_image_release(&tiles[0]);
    rp_image_release(&tiles[1]);
    rp_tensor_release(&x);
    rp_tensor_release(&m);
    rp_tensor_release(&m78);
    rp_tensor_release(&flat);
    rp_tensor_release(&im);
    rp_tensor_release(&x2);
    rp_tensor_release(&x4);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("render");
    TCase *tc = tcase_create("render");
    tcase_add_test(tc, test_jet_table);
    tcase_add_test(tc, test_bilinear_2x2_by_2);
    tcase_add_test(tc, test_bilinear_by_3_edges);
    tcase_add_test(tc, test_constant_map);
    tcase_add_test(tc, test_gray_input);
    tcase_add_test(tc, test_reference_pictures);
    tcase_add_test(tc, test_panel_layout);
    tcase_add_test(tc, test_panel_captions_truncated);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
