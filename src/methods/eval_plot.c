/* The perturbation plot (relprop eval): accuracy against the fraction of
 * pixels removed, one line per method; positive perturbation (most relevant
 * first) on the left, negative (least relevant first) on the right. The SVG
 * and the PNG share one layout (the struct below) so they show the same
 * picture; the PNG is drawn here, with anti-aliased lines (coverage from the
 * distance to each segment) and stb_easy_font's bitmap glyphs, so no
 * plotting library is needed. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* stb_easy_font: public-domain bitmap font made of quads (Debian libstb). */
#include <stb_easy_font.h>

/* Layout in pixels of the PNG; the SVG uses the same numbers as user units. */
enum {
    PLOT_W = 1200,
    PLOT_TOP = 90,     /* title and two lines of panel title above */
    PANEL_W = 470,
    PANEL_H = 340,
    PANEL_X0 = 80,     /* left edge of the left panel */
    PANEL_GAP = 130,   /* between the panels (room for the right panel's y labels) */
    LEGEND_TOP = PLOT_TOP + PANEL_H + 60,
    LEGEND_ROW = 26,
    LEGEND_COLS = 3,
    LEGEND_COL_W = 360,
    FONT = 2           /* font units to pixels */
};

/* Okabe-Ito-like palette, distinguishable and ordered as the methods. */
static const uint8_t palette[][3] = {
    {213, 94, 0},  {0, 114, 178}, {0, 158, 115},  {204, 121, 167},
    {230, 159, 0}, {86, 180, 233}, {100, 100, 100}, {0, 0, 0},
};
#define N_COLOURS ((int)(sizeof palette / sizeof palette[0]))

static int plot_height(int n_methods)
{
    int rows = (n_methods + LEGEND_COLS - 1) / LEGEND_COLS;
    return LEGEND_TOP + rows * LEGEND_ROW + 20;
}

static double px_x(int panel, double frac) /* frac in [0, 0.9] */
{
    return PANEL_X0 + panel * (PANEL_W + PANEL_GAP) + frac / 0.9 * PANEL_W;
}

static double px_y(double acc) /* acc in [0, 1] */ { return PLOT_TOP + (1.0 - acc) * PANEL_H; }

static rp_status check_curves(const rp_eval_curves *c, rp_error *err)
{
    if (!c || c->n_methods < 1 || !c->names || !c->acc_pos || !c->acc_neg)
        return rp_fail(err, RP_ERR_ARG, "plot: no curves");
    for (int i = 0; i < c->n_methods * RP_EVAL_STEPS; i++)
        if (!(c->acc_pos[i] >= 0 && c->acc_pos[i] <= 1 && c->acc_neg[i] >= 0 && c->acc_neg[i] <= 1))
            return rp_fail(err, RP_ERR_VALUE, "plot: accuracy %d is not in [0, 1]", i);
    return RP_OK;
}

static const char *panel_title[2][2] = {{"positive: most relevant removed first", "(lower AUC is better)"},
                                        {"negative: least relevant removed first", "(higher AUC is better)"}};

/* ---- SVG ---- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            b->oom = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
}

/* Text for XML: the five special characters escaped, control bytes dropped. */
static void sb_xml(sbuf *b, const char *t)
{
    for (; t && *t; t++) {
        switch (*t) {
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '&': sb_printf(b, "&amp;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        case '\'': sb_printf(b, "&apos;"); break;
        default:
            if ((unsigned char)*t >= 32)
                sb_printf(b, "%c", *t);
        }
    }
}

rp_status rp_eval_plot_svg(const rp_eval_curves *c, char **out, rp_error *err)
{
    *out = NULL;
    rp_status rc = check_curves(c, err);
    if (rc)
        return rc;
    sbuf b = {0};
    int h = plot_height(c->n_methods);
    sb_printf(&b,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
              "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
              PLOT_W, h, PLOT_W, h);
    sb_printf(&b, "<text x=\"%d\" y=\"28\" font-size=\"20\" text-anchor=\"middle\">", PLOT_W / 2);
    sb_xml(&b, c->title ? c->title : "perturbation test");
    sb_printf(&b, "</text>\n");
    for (int p = 0; p < 2; p++) {
        double x0 = px_x(p, 0), x1 = px_x(p, 0.9);
        for (int l = 0; l < 2; l++)
            sb_printf(&b, "<text x=\"%.1f\" y=\"%d\" font-size=\"15\" text-anchor=\"middle\">%s</text>\n",
                      (x0 + x1) / 2, PLOT_TOP - 32 + 18 * l, panel_title[p][l]);
        for (int t = 0; t <= 10; t += 2) { /* y grid and labels: accuracy 0..100 % */
            double y = px_y(t / 10.0);
            sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y, x1, y);
            sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"end\">%d</text>\n", x0 - 6,
                      y + 4, t * 10);
        }
        for (int t = 0; t < RP_EVAL_STEPS; t++) { /* x grid and labels: 0..90 % removed */
            double x = px_x(p, t / 10.0);
            sb_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>\n", x, PLOT_TOP, x,
                      PLOT_TOP + PANEL_H);
            sb_printf(&b, "<text x=\"%.1f\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\">%d</text>\n", x,
                      PLOT_TOP + PANEL_H + 18, t * 10);
        }
        sb_printf(&b, "<rect x=\"%.1f\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", x0,
                  PLOT_TOP, PANEL_W, PANEL_H);
        sb_printf(&b, "<text x=\"%.1f\" y=\"%d\" font-size=\"14\" text-anchor=\"middle\">pixels removed (%%)</text>\n",
                  (x0 + x1) / 2, PLOT_TOP + PANEL_H + 40);
        sb_printf(&b,
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" text-anchor=\"middle\" "
                  "transform=\"rotate(-90 %.1f %.1f)\">accuracy (%% of rows still hit)</text>\n",
                  x0 - 44, PLOT_TOP + PANEL_H / 2.0, x0 - 44, PLOT_TOP + PANEL_H / 2.0);
        const double *acc = p == 0 ? c->acc_pos : c->acc_neg;
        for (int m = 0; m < c->n_methods; m++) {
            const uint8_t *col = palette[m % N_COLOURS];
            sb_printf(&b, "<polyline fill=\"none\" stroke=\"#%02x%02x%02x\" stroke-width=\"2.5\" points=\"", col[0],
                      col[1], col[2]);
            for (int s = 0; s < RP_EVAL_STEPS; s++)
                sb_printf(&b, "%s%.2f,%.2f", s ? " " : "", px_x(p, s / 10.0), px_y(acc[m * RP_EVAL_STEPS + s]));
            sb_printf(&b, "\"/>\n");
        }
    }
    for (int m = 0; m < c->n_methods; m++) {
        const uint8_t *col = palette[m % N_COLOURS];
        int x = PANEL_X0 + (m % LEGEND_COLS) * LEGEND_COL_W, y = LEGEND_TOP + (m / LEGEND_COLS) * LEGEND_ROW;
        sb_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#%02x%02x%02x\" stroke-width=\"4\"/>\n", x,
                  y, x + 30, y, col[0], col[1], col[2]);
        sb_printf(&b, "<text x=\"%d\" y=\"%d\" font-size=\"14\">", x + 38, y + 5);
        sb_xml(&b, c->names[m]);
        sb_printf(&b, "</text>\n");
    }
    sb_printf(&b, "</svg>\n");
    if (b.oom) {
        free(b.s);
        return rp_fail(err, RP_ERR_NOMEM, "plot: out of memory writing the SVG");
    }
    *out = b.s;
    return RP_OK;
}

/* ---- PNG ---- */

/* Blend colour col into pixel (x, y) with coverage a in [0, 1]. */
static void blend(rp_image *im, int x, int y, const uint8_t col[3], double a)
{
    if (x < 0 || y < 0 || x >= im->width || y >= im->height || a <= 0)
        return;
    uint8_t *p = im->pixels + ((size_t)y * (size_t)im->width + (size_t)x) * 3;
    for (int k = 0; k < 3; k++)
        p[k] = (uint8_t)lrint(p[k] * (1 - a) + col[k] * a);
}

static void fill(rp_image *im, int x0, int y0, int x1, int y1, const uint8_t col[3])
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            blend(im, x, y, col, 1);
}

/* A segment of the given width: each pixel near it is covered by
 * clamp(width / 2 + 0.5 - distance to the segment, 0, 1), a cheap
 * approximation of the exact area that looks smooth at these widths. Pixel
 * centres are at +0.5. Where two segments of a line meet, the maximum
 * coverage is not tracked, so the joint is drawn twice: slightly darker, never
 * visibly. */
static void segment(rp_image *im, double ax, double ay, double bx, double by, double width, const uint8_t col[3])
{
    double r = width / 2 + 1;
    int x0 = (int)floor(fmin(ax, bx) - r), x1 = (int)ceil(fmax(ax, bx) + r);
    int y0 = (int)floor(fmin(ay, by) - r), y1 = (int)ceil(fmax(ay, by) + r);
    double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            double px = x + 0.5, py = y + 0.5;
            double t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double ex = ax + t * dx - px, ey = ay + t * dy - py;
            double cov = width / 2 + 0.5 - sqrt(ex * ex + ey * ey);
            blend(im, x, y, col, cov > 1 ? 1 : cov);
        }
}

/* Text with its top-left at (x, y); align 0 left, 1 centre, 2 right. */
static void text(rp_image *im, const char *s, int x, int y, int align, const uint8_t col[3])
{
    char buf[256];
    size_t n = 0;
    for (; *s && n + 1 < sizeof buf; s++) /* the font has printable ASCII only */
        buf[n++] = (unsigned char)*s >= 32 && (unsigned char)*s < 127 ? *s : '?';
    buf[n] = 0;
    int w = stb_easy_font_width(buf) * FONT;
    x -= align == 1 ? w / 2 : align == 2 ? w : 0;
    const size_t vbytes = sizeof(float) * 16 * 4096; /* 4096 quads: 255 glyphs need well under that */
    float *v = malloc(vbytes);
    if (!v)
        return; /* text is decoration; the curves are drawn either way */
    int quads = stb_easy_font_print(0.0f, 0.0f, buf, NULL, v, (int)vbytes);
    for (int q = 0; q < quads; q++) {
        const float *qv = v + q * 16; /* vertex 0 top-left, vertex 2 bottom-right */
        fill(im, x + (int)lrintf(qv[0]) * FONT, y + (int)lrintf(qv[1]) * FONT, x + (int)lrintf(qv[8]) * FONT,
             y + (int)lrintf(qv[9]) * FONT, col);
    }
    free(v);
}

/* Rotated text is not worth a rasteriser: the y label is written letter by
 * letter downwards. */
static void text_vertical(rp_image *im, const char *s, int x, int y, const uint8_t col[3])
{
    for (; *s; s++, y += 8 * FONT) {
        char one[2] = {*s, 0};
        text(im, one, x, y, 1, col);
    }
}

rp_status rp_eval_plot_image(const rp_eval_curves *c, rp_image *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    rp_status rc = check_curves(c, err);
    if (rc)
        return rc;
    int h = plot_height(c->n_methods);
    out->pixels = malloc((size_t)PLOT_W * (size_t)h * 3);
    if (!out->pixels)
        return rp_fail(err, RP_ERR_NOMEM, "plot: out of memory for a %d x %d image", PLOT_W, h);
    out->width = PLOT_W;
    out->height = h;
    out->channels = 3;
    memset(out->pixels, 255, (size_t)PLOT_W * (size_t)h * 3);
    static const uint8_t ink[3] = {20, 20, 20}, grid_major[3] = {221, 221, 221}, grid_minor[3] = {238, 238, 238};
    text(out, c->title ? c->title : "perturbation test", PLOT_W / 2, 14, 1, ink);
    for (int p = 0; p < 2; p++) {
        int x0 = (int)px_x(p, 0), x1 = (int)px_x(p, 0.9);
        for (int l = 0; l < 2; l++)
            text(out, panel_title[p][l], (x0 + x1) / 2, PLOT_TOP - 46 + 20 * l, 1, ink);
        for (int t = 0; t < RP_EVAL_STEPS; t++) {
            int x = (int)lrint(px_x(p, t / 10.0));
            fill(out, x, PLOT_TOP, x + 1, PLOT_TOP + PANEL_H, grid_minor);
            char lab[8];
            snprintf(lab, sizeof lab, "%d", t * 10);
            text(out, lab, x, PLOT_TOP + PANEL_H + 8, 1, ink);
        }
        for (int t = 0; t <= 10; t += 2) {
            int y = (int)lrint(px_y(t / 10.0));
            fill(out, x0, y, x1, y + 1, grid_major);
            char lab[8];
            snprintf(lab, sizeof lab, "%d", t * 10);
            text(out, lab, x0 - 8, y - 6, 2, ink);
        }
        fill(out, x0, PLOT_TOP, x1 + 1, PLOT_TOP + 1, ink); /* frame */
        fill(out, x0, PLOT_TOP + PANEL_H, x1 + 1, PLOT_TOP + PANEL_H + 1, ink);
        fill(out, x0, PLOT_TOP, x0 + 1, PLOT_TOP + PANEL_H, ink);
        fill(out, x1, PLOT_TOP, x1 + 1, PLOT_TOP + PANEL_H + 1, ink);
        text(out, "pixels removed (%)", (x0 + x1) / 2, PLOT_TOP + PANEL_H + 32, 1, ink);
        text_vertical(out, "accuracy", x0 - 62, PLOT_TOP + PANEL_H / 2 - 64, ink);
        const double *acc = p == 0 ? c->acc_pos : c->acc_neg;
        for (int m = 0; m < c->n_methods; m++)
            for (int s = 1; s < RP_EVAL_STEPS; s++)
                segment(out, px_x(p, (s - 1) / 10.0), px_y(acc[m * RP_EVAL_STEPS + s - 1]), px_x(p, s / 10.0),
                        px_y(acc[m * RP_EVAL_STEPS + s]), 2.5, palette[m % N_COLOURS]);
    }
    for (int m = 0; m < c->n_methods; m++) {
        int x = PANEL_X0 + (m % LEGEND_COLS) * LEGEND_COL_W, y = LEGEND_TOP + (m / LEGEND_COLS) * LEGEND_ROW;
        segment(out, x, y, x + 30, y, 4, palette[m % N_COLOURS]);
        text(out, c->names[m], x + 38, y - 7, 0, ink);
    }
    return RP_OK;
}
