/*
 * driftloop._scan: one pass over capture lines in SageMaker's exact layout.
 *
 * The optional compiled half of driftloop.capture's reader (see `_NativeScan` there).
 * `scan` reads a piece of JSON Lines in which every line must be a capture record laid
 * out byte for byte as SageMaker writes it, with CSV or JSON input (and output), and
 * either fills the caller's arrays with the rows' values and returns the strings, or
 * returns None as soon as any line differs in any way. None means "nothing was
 * decided": the Python reader then parses the piece its usual way, which is also what
 * counts malformed input. So this code never has to judge bad input; it only has to be
 * certain that every line it accepts is read exactly as the Python paths read it.
 *
 * What a line must be to be accepted (anything else returns None):
 *   {"captureData":{"endpointInput":{"observedContentType":"T","mode":"INPUT",
 *    "data":"D","encoding":"CSV|JSON"}[,"endpointOutput":{"observedContentType":"T",
 *    "mode":"OUTPUT","data":"O","encoding":"CSV|JSON"}]},"eventMetadata":{"eventId":"E"
 *    [,"inferenceId":"I"],"inferenceTime":"W"},"eventVersion":"0"}\n
 * - every variable string holds only printable ASCII (0x20-0x7e) and, but for the
 *   escapes named below, no backslash, so its value is literally the bytes between its
 *   quotes (no other JSON escape, no UTF-8);
 * - a CSV D holds one or more rows separated by escaped newlines (blank rows are
 *   skipped), each of exactly n_features comma-separated fields; a numeric field is
 *   empty (a missing value, NaN) or a plain decimal number
 *   ([+-]digits[.digits][e[+-]digits]); a categorical field is any text (empty is
 *   missing); a CSV O has as many rows, each starting with such a number (the
 *   prediction; the rest of the row is ignored, as the Python path does);
 * - a JSON D or O is one of the shapes described above json_input.
 *
 * Numbers are converted exactly as float() converts them (correctly rounded): the
 * decimal significand and power of ten are exact doubles in the common case (at most
 * 2^53 and 10^22, Clinger's fast path), so one IEEE multiplication or division gives
 * the correctly rounded result; every other number goes to PyOS_string_to_double,
 * the conversion float() itself uses.
 */
#define PY_SSIZE_T_CLEAN
/* The stable ABI of CPython 3.11 (setup.py defines Py_LIMITED_API): one build,
 * `_scan.abi3.so`, loads in every CPython from 3.11 on, the Lambda runtime's included. */
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define LIT(s) s, (sizeof(s) - 1)

static const char HEAD[] = "{\"captureData\":{\"endpointInput\":{\"observedContentType\":\"";
static const char IN_MODE[] = "\",\"mode\":\"INPUT\",\"data\":\"";
static const char ENC_CSV[] = "\",\"encoding\":\"CSV\"}";
static const char ENC_JSON[] = "\",\"encoding\":\"JSON\"}";
static const char OUT_HEAD[] = ",\"endpointOutput\":{\"observedContentType\":\"";
static const char OUT_MODE[] = "\",\"mode\":\"OUTPUT\",\"data\":\"";
static const char META[] = "},\"eventMetadata\":{\"eventId\":\"";
static const char INF_ID[] = "\",\"inferenceId\":\"";
static const char INF_TIME[] = "\",\"inferenceTime\":\"";
static const char TAIL[] = "\"},\"eventVersion\":\"0\"}\n";

/* byte classes inside a variable string: 0 plain, 1 the closing quote, 2 refused.
 * FIELD adds the comma as a stop (1) for the fields of a CSV payload. */
static unsigned char CLS[256];
static unsigned char FIELD[256];

static void init_classes(void) {
    for (int c = 0; c < 256; c++) {
        CLS[c] = (c < 0x20 || c > 0x7e || c == '\\') ? 2 : 0;
    }
    CLS['"'] = 1;
    memcpy(FIELD, CLS, sizeof(CLS));
    FIELD[','] = 1;
}

static const double POW10[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* Match literal `s` (n bytes) at *p and move past it. */
static inline int lit(const char **p, const char *end, const char *s, size_t n) {
    if ((size_t)(end - *p) < n || memcmp(*p, s, n) != 0) {
        return 0;
    }
    *p += n;
    return 1;
}

/* The end (closing quote) of the string starting at p, or NULL if a byte is refused.
 * With SSE2 (every x86-64), 16 bytes are checked at a time: a quote, a backslash, or a
 * byte below 0x20 or above 0x7f (negative as a signed byte) stops the fast loop. */
static inline const char *string_end(const char *p, const char *end) {
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i slash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)p);
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(b, quote), _mm_cmpeq_epi8(b, slash)),
                                   _mm_cmplt_epi8(b, space));
        int mask = _mm_movemask_epi8(hit);
        if (mask) {
            p += __builtin_ctz((unsigned)mask);
            return *p == '"' ? p : NULL;
        }
        p += 16;
    }
#endif
    while (p < end) {
        unsigned char k = CLS[(unsigned char)*p];
        if (k == 0) {
            p++;
            continue;
        }
        return k == 1 ? p : NULL;
    }
    return NULL;
}

/* Parse the plain decimal number at s (before end) into *out; return where it stops
 * (the caller checks that a delimiter follows), or NULL if there is no number there or
 * the general conversion fails. */
static const char *parse_number_careful(const char *s, const char *end, double *out) {
    const char *p = s;
    int neg = 0;
    if (p < end && (*p == '+' || *p == '-')) {
        neg = (*p == '-');
        p++;
    }
    uint64_t mant = 0;
    int nd = 0;        /* significant digits kept in mant */
    int any = 0;       /* digits seen at all */
    int dropped = 0;   /* a non-zero digit did not fit in mant */
    long dexp = 0;     /* value = mant * 10^dexp */
    unsigned d;
    while (p < end && *p == '0') { /* leading zeros */
        any = 1;
        p++;
    }
    for (; p < end && (d = (unsigned)(*p - '0')) < 10; p++) {
        any = 1;
        if (nd < 19) {
            mant = mant * 10 + d;
            nd++;
        } else {
            dexp++;
            dropped |= (d != 0);
        }
    }
    if (p < end && *p == '.') {
        p++;
        if (nd == 0) {
            while (p < end && *p == '0') { /* zeros after the point, before any digit */
                any = 1;
                dexp--;
                p++;
            }
        }
        for (; p < end && (d = (unsigned)(*p - '0')) < 10; p++) {
            any = 1;
            if (nd < 19) {
                mant = mant * 10 + d;
                nd++;
                dexp--;
            } else {
                dropped |= (d != 0);
            }
        }
    }
    if (!any) {
        return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = (*p == '-');
            p++;
        }
        if (p >= end || (unsigned)(*p - '0') >= 10) {
            return NULL;
        }
        long ev = 0;
        for (; p < end && (d = (unsigned)(*p - '0')) < 10; p++) {
            if (ev < 100000) {
                ev = ev * 10 + (long)d;
            }
        }
        dexp += eneg ? -ev : ev;
    }
    double v;
    if (mant == 0) {
        v = 0.0;
    } else if (!dropped && mant <= (UINT64_C(1) << 53) && dexp >= -22 && dexp <= 22) {
        v = (double)mant;
        if (dexp < 0) {
            v /= POW10[-dexp];
        } else {
            v *= POW10[dexp];
        }
    } else {
        /* The correctly rounded general case, as float() does it. */
        char small[64];
        size_t n = (size_t)(p - s);
        char *copy = n < sizeof(small) ? small : (char *)PyMem_Malloc(n + 1);
        if (copy == NULL) {
            PyErr_Clear();
            return NULL;
        }
        memcpy(copy, s, n);
        copy[n] = '\0';
        char *stop = NULL;
        double r = PyOS_string_to_double(copy, &stop, NULL);
        int ok = !(r == -1.0 && PyErr_Occurred()) && stop == copy + n;
        if (copy != small) {
            PyMem_Free(copy);
        }
        if (!ok) {
            PyErr_Clear();
            return NULL;
        }
        *out = r; /* the sign is already in r */
        return p;
    }
    *out = neg ? -v : v;
    return p;
}

/* parse_number_careful for the usual spelling, [+-]digits[.digits] with at most 19
 * digits in all and no exponent, in one tight pass; anything else goes the careful
 * way. The digit loops need no bound: the caller guarantees a non-digit (at the latest
 * the line's newline) before end. */
static inline const char *parse_number(const char *s, const char *end, double *out) {
    const char *p = s;
    int neg = (*p == '-');
    p += (*p == '-' || *p == '+');
    uint64_t mant = 0;
    unsigned d;
    const char *digits = p;
    while ((d = (unsigned)(*p - '0')) < 10) {
        mant = mant * 10 + d;
        p++;
    }
    Py_ssize_t n_int = p - digits, n_frac = 0;
    if (*p == '.') {
        const char *frac = ++p;
        while ((d = (unsigned)(*p - '0')) < 10) {
            mant = mant * 10 + d;
            p++;
        }
        n_frac = p - frac;
    }
    if (n_int + n_frac == 0 || n_int + n_frac > 19 || *p == 'e' || *p == 'E' ||
        mant > (UINT64_C(1) << 53) || n_frac > 22) {
        return parse_number_careful(s, end, out);
    }
    double v = (double)mant;
    if (n_frac) {
        v /= POW10[n_frac];
    }
    *out = neg ? -v : v;
    return p;
}

/* ------------------------------------------------------------------ string interning */

typedef struct {
    const char *ptr; /* NULL: an empty slot */
    Py_ssize_t len;
    uint64_t hash;
    int32_t code;
} Slot;

typedef struct {
    Slot *slots;
    size_t mask;
    size_t count;
    PyObject *names; /* list of str, code order */
} Table;

static int table_init(Table *t) {
    const size_t cap = 64; /* grows as needed: most categorical columns have few values */
    t->slots = (Slot *)PyMem_Calloc(cap, sizeof(Slot));
    t->mask = cap - 1;
    t->count = 0;
    t->names = PyList_New(0);
    if (t->slots == NULL || t->names == NULL) {
        PyMem_Free(t->slots);
        t->slots = NULL;
        Py_CLEAR(t->names);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void table_free(Table *t) {
    PyMem_Free(t->slots);
    t->slots = NULL;
    Py_CLEAR(t->names);
}

/* Double the table's capacity; -1 (MemoryError set) if it cannot. */
static int table_grow(Table *t) {
    size_t cap = 2 * (t->mask + 1);
    Slot *slots = (Slot *)PyMem_Calloc(cap, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i <= t->mask; i++) {
        Slot *old = &t->slots[i];
        if (old->ptr != NULL) {
            size_t j = (size_t)old->hash & (cap - 1);
            while (slots[j].ptr != NULL) {
                j = (j + 1) & (cap - 1);
            }
            slots[j] = *old;
        }
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->mask = cap - 1;
    return 0;
}

static inline uint64_t hash_bytes(const char *s, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

/* The code of [s, s+n) in t, adding it (as a str) if new; -1 on a Python error. The
 * table is kept at most half full. */
static inline int32_t intern(Table *t, const char *s, Py_ssize_t n) {
    const uint64_t h = hash_bytes(s, n);
    size_t i = (size_t)h & t->mask;
    for (;;) {
        Slot *slot = &t->slots[i];
        if (slot->ptr == NULL) {
            break;
        }
        if (slot->hash == h && slot->len == n && memcmp(slot->ptr, s, (size_t)n) == 0) {
            return slot->code;
        }
        i = (i + 1) & t->mask;
    }
    PyObject *name = PyUnicode_FromStringAndSize(s, n);
    if (name == NULL) {
        return -1;
    }
    int32_t code = (int32_t)PyList_Size(t->names);
    int rc = PyList_Append(t->names, name);
    Py_DECREF(name);
    if (rc < 0) {
        return -1;
    }
    Slot *slot = &t->slots[i];
    slot->ptr = s;
    slot->len = n;
    slot->hash = h;
    slot->code = code;
    if (2 * ++t->count > t->mask && table_grow(t) < 0) {
        return -1;
    }
    return code;
}

/* ------------------------------------------------------------------ JSON payloads */

/* A JSON payload sits in the line as a string: its quotes are escaped (\") and its
 * line breaks are escapes (\n). What is read here, as driftloop.capture's _json_rows
 * and _json_scores read it, and nothing else (the Python paths take the rest):
 *   input   {"instances": ROWS} or {"features": ROWS} (the only key), or ROWS, where
 *           ROWS is [[v, ...], ...] or one flat row [v, ...]; a row has n_features
 *           values: numbers, true/false and null in numeric columns, strings and null
 *           in categorical ones;
 *   output  {"predictions"|"scores"|"score"|"outputs": [number, ...] or number} or
 *           [number, ...], one number per input row.
 * Spaces and the escapes \n \r \t count as JSON whitespace. Numbers follow JSON's
 * grammar (orjson refuses the rest) and convert as orjson + float() do: correctly
 * rounded, an integer zero is +0.0, and a number too large for a double is refused. */

typedef struct {
    const unsigned char *kind;
    Py_ssize_t n_features;
    double *num_out;
    int32_t *cat_out;
    Table *tables;
    Py_ssize_t stride;
} Cols;

static inline const char *json_ws(const char *p) {
    for (;;) {
        if (*p == ' ') {
            p++;
        } else if (p[0] == '\\' && (p[1] == 'n' || p[1] == 'r' || p[1] == 't')) {
            p += 2;
        } else {
            return p;
        }
    }
}

static inline int is_digit(char c) { return (unsigned)(c - '0') < 10; }

/* Whether p starts with text. Compares byte by byte and stops at the first difference,
 * so it never reads past the newline that ends the blob (text holds none). */
static inline int starts(const char *p, const char *text) {
    for (; *text; p++, text++) {
        if (*p != *text) {
            return 0;
        }
    }
    return 1;
}

/* A JSON number at p into *out; where it ends, or NULL if it is not one. */
static const char *json_number(const char *p, double *out) {
    const char *s = p;
    int integer = 1;
    if (*p == '-') {
        p++;
    }
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (is_digit(*p)) {
            p++;
        }
    } else {
        return NULL;
    }
    if (*p == '.') {
        integer = 0;
        if (!is_digit(*++p)) {
            return NULL;
        }
        while (is_digit(*p)) {
            p++;
        }
    }
    if (*p == 'e' || *p == 'E') {
        integer = 0;
        p++;
        if (*p == '+' || *p == '-') {
            p++;
        }
        if (!is_digit(*p)) {
            return NULL;
        }
        while (is_digit(*p)) {
            p++;
        }
    }
    double v;
    if (parse_number(s, p, &v) != p || isinf(v)) {
        return NULL;
    }
    *out = (integer && v == 0.0) ? 0.0 : v; /* an int has no sign of zero */
    return p;
}

/* An escaped JSON string \"...\" at p with no escape inside: its text in [*s, *e). */
static inline const char *json_string(const char *p, const char **s, const char **e) {
    if (p[0] != '\\' || p[1] != '"') {
        return NULL;
    }
    p += 2;
    *s = p;
    while (FIELD[(unsigned char)*p] == 0 || *p == ',') {
        p++;
    }
    if (p[0] != '\\' || p[1] != '"') {
        return NULL;
    }
    *e = p;
    return p + 2;
}

/* One row [v, ...] at *pp into row r. 1 read, 0 declined, -1 Python error. */
static int json_row(const Cols *c, const char **pp, Py_ssize_t r) {
    const char *p = *pp;
    if (*p != '[') {
        return 0;
    }
    p = json_ws(p + 1);
    Py_ssize_t jn = 0, jc = 0;
    for (Py_ssize_t j = 0; j < c->n_features; j++) {
        if (j > 0) {
            if (*p != ',') {
                return 0;
            }
            p = json_ws(p + 1);
        }
        const int is_null = starts(p, "null");
        if (c->kind[j]) {
            int32_t code = -1;
            if (is_null) {
                p += 4;
            } else {
                const char *s, *e;
                if ((p = json_string(p, &s, &e)) == NULL) {
                    return 0;
                }
                if (e > s && (code = intern(&c->tables[jc], s, e - s)) < 0) {
                    return -1;
                }
            }
            c->cat_out[jc++ * c->stride + r] = code;
        } else {
            double v = NAN;
            if (is_null) {
                p += 4;
            } else if (starts(p, "true")) {
                v = 1.0;
                p += 4;
            } else if (starts(p, "false")) {
                v = 0.0;
                p += 5;
            } else if ((p = json_number(p, &v)) == NULL) {
                return 0;
            }
            c->num_out[jn++ * c->stride + r] = v;
        }
        p = json_ws(p);
    }
    if (*p != ']') {
        return 0;
    }
    *pp = p + 1;
    return 1;
}

/* ROWS at *pp: [[...], ...] or one flat row; rows from *r on (advanced). */
static int json_row_list(const Cols *c, const char **pp, Py_ssize_t *r) {
    const char *p = *pp;
    if (*p != '[') {
        return 0;
    }
    const char *q = json_ws(p + 1);
    if (*q != '[') { /* one flat row */
        if (*r >= c->stride) {
            return 0;
        }
        int rc = json_row(c, &p, *r);
        if (rc == 1) {
            (*r)++;
            *pp = p;
        }
        return rc;
    }
    p = q;
    for (;;) {
        if (*r >= c->stride) {
            return 0;
        }
        int rc = json_row(c, &p, *r);
        if (rc != 1) {
            return rc;
        }
        (*r)++;
        p = json_ws(p);
        if (*p == ']') {
            *pp = p + 1;
            return 1;
        }
        if (*p != ',') {
            return 0;
        }
        p = json_ws(p + 1);
    }
}

/* The escaped key \"key\" at p: where its value's separator is, or NULL. */
static inline const char *json_key(const char *p, const char *key, size_t n) {
    if (!starts(p, "\\\"") || !starts(p + 2, key) || !starts(p + 2 + n, "\\\"")) {
        return NULL;
    }
    return json_ws(p + 4 + n);
}

/* A JSON request at *pp, up to the string's closing quote. 1/0/-1 as json_row. */
static int json_input(const Cols *c, const char **pp, Py_ssize_t *r) {
    const char *p = json_ws(*pp);
    int rc;
    if (*p == '{') {
        const char *q = json_ws(p + 1);
        const char *v = json_key(q, "instances", 9);
        if (v == NULL) {
            v = json_key(q, "features", 8);
        }
        if (v == NULL || *v != ':') {
            return 0;
        }
        p = json_ws(v + 1);
        if ((rc = json_row_list(c, &p, r)) != 1) {
            return rc;
        }
        p = json_ws(p);
        if (*p != '}') {
            return 0;
        }
        p++;
    } else if ((rc = json_row_list(c, &p, r)) != 1) {
        return rc;
    }
    p = json_ws(p);
    if (*p != '"') {
        return 0;
    }
    *pp = p;
    return 1;
}

/* A JSON output at *pp: one prediction per row r0..r-1. 1 read, 0 declined. */
static int json_output(const char **pp, double *pred_out, Py_ssize_t r0, Py_ssize_t r) {
    const char *p = json_ws(*pp);
    int in_dict = 0;
    if (*p == '{') {
        static const char *const keys[] = {"predictions", "scores", "score", "outputs"};
        const char *q = json_ws(p + 1), *v = NULL;
        for (size_t i = 0; i < 4 && v == NULL; i++) {
            v = json_key(q, keys[i], strlen(keys[i]));
        }
        if (v == NULL || *v != ':') {
            return 0;
        }
        p = json_ws(v + 1);
        in_dict = 1;
    }
    Py_ssize_t k = r0;
    if (*p == '[') {
        p = json_ws(p + 1);
        while (*p != ']') {
            if (k > r0) {
                if (*p != ',') {
                    return 0;
                }
                p = json_ws(p + 1);
            }
            if (k == r || (p = json_number(p, &pred_out[k])) == NULL) {
                return 0;
            }
            k++;
            p = json_ws(p);
        }
        p++;
    } else if (in_dict) { /* {"score": 0.5}: one prediction */
        if (k == r || (p = json_number(p, &pred_out[k])) == NULL) {
            return 0;
        }
        k++;
    } else {
        return 0;
    }
    p = json_ws(p);
    if (in_dict) {
        if (*p != '}') {
            return 0;
        }
        p = json_ws(p + 1);
    }
    if (*p != '"' || k != r) {
        return 0;
    }
    *pp = p;
    return 1;
}

/* ------------------------------------------------------------------ the scan */

typedef struct {
    Py_buffer buf;
    int held;
} Out;

static int get_out(PyObject *obj, Out *o, Py_ssize_t need, const char *what) {
    if (PyObject_GetBuffer(obj, &o->buf, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    o->held = 1;
    if (o->buf.len < need) {
        PyErr_Format(PyExc_ValueError, "scan: %s holds %zd bytes, %zd needed", what,
                     o->buf.len, need);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(scan_doc,
"scan(blob, n_lines, kinds, num, cat, pred, times, stride, offset)\n"
"\n"
"Read n_lines capture lines (each ending in a newline) of blob in SageMaker's exact\n"
"layout. kinds holds one byte per feature, 0 numeric and 1 categorical. The lines'\n"
"CSV rows, in order, go to rows offset, offset+1, ... of column-major arrays with\n"
"`stride` rows: num (float64, one column per numeric feature), cat (int32 codes, -1 for an empty value, one column\n"
"per categorical feature), pred (float64, NaN without an output) and times (int32\n"
"codes). Returns (names per categorical feature, event ids per row, inference ids\n"
"per row or None, time strings), or None, with the arrays partly written, when any\n"
"line differs from the layout in any way or the rows do not fit.");

static PyObject *scan(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer blob;
    Py_ssize_t n_lines, stride, offset;
    Py_buffer kinds;
    PyObject *num_obj, *cat_obj, *pred_obj, *time_obj;
    if (!PyArg_ParseTuple(args, "y*ny*OOOOnn", &blob, &n_lines, &kinds, &num_obj, &cat_obj,
                          &pred_obj, &time_obj, &stride, &offset)) {
        return NULL;
    }
    PyObject *result = NULL;
    Out num = {0}, cat = {0}, pred = {0}, times = {0};
    Table *tables = NULL;
    Table time_table = {0};
    PyObject *event_ids = NULL, *inference_ids = NULL;
    int any_inference_id = 0;
    const Py_ssize_t n_features = kinds.len;
    const unsigned char *kind = (const unsigned char *)kinds.buf;
    Py_ssize_t n_num = 0, n_cat = 0;
    for (Py_ssize_t j = 0; j < n_features; j++) {
        if (kind[j]) {
            n_cat++;
        } else {
            n_num++;
        }
    }
    if (n_lines < 0 || offset < 0 || stride < offset + n_lines || n_features == 0) {
        PyErr_SetString(PyExc_ValueError, "scan: bad sizes");
        goto done;
    }
    if (get_out(num_obj, &num, (Py_ssize_t)sizeof(double) * n_num * stride, "num") < 0 ||
        get_out(cat_obj, &cat, (Py_ssize_t)sizeof(int32_t) * n_cat * stride, "cat") < 0 ||
        get_out(pred_obj, &pred, (Py_ssize_t)sizeof(double) * stride, "pred") < 0 ||
        get_out(time_obj, &times, (Py_ssize_t)sizeof(int32_t) * stride, "times") < 0) {
        goto done;
    }
    double *num_out = (double *)num.buf.buf;
    int32_t *cat_out = (int32_t *)cat.buf.buf;
    Cols cols = {kind, n_features, num_out, cat_out, NULL, stride};
    double *pred_out = (double *)pred.buf.buf;
    int32_t *time_out = (int32_t *)times.buf.buf;

    tables = (Table *)PyMem_Calloc((size_t)(n_cat ? n_cat : 1), sizeof(Table));
    if (tables == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n_cat; k++) {
        if (table_init(&tables[k]) < 0) {
            goto done;
        }
    }
    cols.tables = tables;
    if (table_init(&time_table) < 0) {
        goto done;
    }
    event_ids = PyList_New(0);
    inference_ids = PyList_New(0);
    if (event_ids == NULL || inference_ids == NULL) {
        goto done;
    }

    const char *p = (const char *)blob.buf;
    const char *end = p + blob.len;
    const char *last_time = NULL;
    Py_ssize_t last_time_len = 0;
    int32_t last_time_code = -1;
    /* every line ends in a newline: the number parser's loops rely on it */
    int rejected = blob.len == 0 || end[-1] != '\n';
    Py_ssize_t r = offset; /* the next row to fill */
    for (Py_ssize_t i = 0; i < n_lines && !rejected; i++) {
        const char *s, *q;
        /* input: content type, then the CSV payload */
        if (!lit(&p, end, LIT(HEAD)) || (q = string_end(p, end)) == NULL) {
            rejected = 1;
            break;
        }
        p = q;
        if (!lit(&p, end, LIT(IN_MODE))) {
            rejected = 1;
            break;
        }
        /* the payload: rows of exactly n_features fields, read in one pass up to its
         * closing quote. A field ends at a comma, a row's last one at the quote or at an
         * escaped newline (\n), which starts the next row; blank rows are skipped, as
         * the Python paths skip them. */
        const Py_ssize_t r0 = r;
        const int json_in = (*p == '{' || *p == '[');
        if (json_in) {
            int rc = json_input(&cols, &p, &r);
            if (rc < 0) {
                goto done;
            }
            rejected = (rc == 0);
        } else for (;;) {
            while (p[0] == '\\' && p[1] == 'n') { /* blank rows (the newline ends the blob) */
                p += 2;
            }
            if (*p == '"') {
                break;
            }
            if (r >= stride) { /* more rows than the caller made room for */
                rejected = 1;
                break;
            }
            Py_ssize_t jn = 0, jc = 0;
            for (Py_ssize_t j = 0; j < n_features; j++) {
                const int last = (j + 1 == n_features);
                if (kind[j]) {
                    s = p;
                    while (p < end && FIELD[(unsigned char)*p] == 0) {
                        p++;
                    }
                    int32_t code = -1;
                    if (p > s) {
                        code = intern(&tables[jc], s, p - s);
                        if (code < 0) {
                            goto done;
                        }
                    }
                    cat_out[jc * stride + r] = code;
                    jc++;
                } else {
                    double v = NAN;
                    if (*p != ',' && *p != '"' && *p != '\\') {
                        p = parse_number(p, end, &v);
                        if (p == NULL) {
                            rejected = 1;
                            break;
                        }
                    }
                    num_out[jn * stride + r] = v;
                    jn++;
                }
                /* what ends the field: a comma before the last field; after it, the
                 * quote (left for the row loop) or an escaped newline */
                if (!last) {
                    if (*p != ',') {
                        rejected = 1;
                        break;
                    }
                    p++;
                } else if (p[0] == '\\' && p[1] == 'n') {
                    p += 2;
                } else if (*p != '"') {
                    rejected = 1;
                    break;
                }
            }
            if (rejected) {
                break;
            }
            r++;
        }
        if (rejected) {
            break;
        }
        const Py_ssize_t n_rows = r - r0;
        if (n_rows == 0) { /* an empty payload has no row (counted by the Python path) */
            rejected = 1;
            break;
        }
        if (json_in ? !lit(&p, end, LIT(ENC_JSON)) : !lit(&p, end, LIT(ENC_CSV))) {
            rejected = 1;
            break;
        }
        /* output, if any: one prediction per input row (a different count is for the
         * Python path to count); in CSV, the first field of each of its rows */
        for (Py_ssize_t k = r0; k < r; k++) {
            pred_out[k] = NAN;
        }
        if (lit(&p, end, LIT(OUT_HEAD))) {
            if ((q = string_end(p, end)) == NULL) {
                rejected = 1;
                break;
            }
            p = q;
            if (!lit(&p, end, LIT(OUT_MODE))) {
                rejected = 1;
                break;
            }
            if (*p == '{' || *p == '[') {
                if (!json_output(&p, pred_out, r0, r) || !lit(&p, end, LIT(ENC_JSON))) {
                    rejected = 1;
                    break;
                }
                goto metadata;
            }
            Py_ssize_t k = r0;
            for (;;) {
                while (p[0] == '\\' && p[1] == 'n') {
                    p += 2;
                }
                if (*p == '"') {
                    break;
                }
                double score;
                if (k == r || (p = parse_number(p, end, &score)) == NULL) {
                    rejected = 1;
                    break;
                }
                if (*p != ',' && *p != '"' && *p != '\\') {
                    rejected = 1;
                    break;
                }
                pred_out[k++] = score;
                /* the rest of the row, up to an escaped newline or the quote */
                while (CLS[(unsigned char)*p] == 0) {
                    p++;
                }
                if (p[0] == '\\' && p[1] == 'n') {
                    p += 2;
                } else if (*p != '"') {
                    rejected = 1;
                    break;
                }
            }
            if (rejected || k != r) {
                rejected = 1;
                break;
            }
            if (!lit(&p, end, LIT(ENC_CSV))) {
                rejected = 1;
                break;
            }
        }
    metadata:
        /* event metadata */
        if (!lit(&p, end, LIT(META)) || (q = string_end(p, end)) == NULL) {
            rejected = 1;
            break;
        }
        PyObject *eid = PyUnicode_FromStringAndSize(p, q - p);
        if (eid == NULL) {
            goto done;
        }
        /* a row's identity: the event id, and for a request of several rows ":index" */
        for (Py_ssize_t k = 0; k < n_rows; k++) {
            PyObject *rid = n_rows == 1 ? Py_NewRef(eid) : PyUnicode_FromFormat("%U:%zd", eid, k);
            if (rid == NULL || PyList_Append(event_ids, rid) < 0) {
                Py_XDECREF(rid);
                Py_DECREF(eid);
                goto done;
            }
            Py_DECREF(rid);
        }
        Py_DECREF(eid);
        p = q;
        PyObject *iid = Py_None;
        if (lit(&p, end, LIT(INF_ID))) {
            if ((q = string_end(p, end)) == NULL) {
                rejected = 1;
                break;
            }
            iid = PyUnicode_FromStringAndSize(p, q - p);
            if (iid == NULL) {
                goto done;
            }
            any_inference_id = 1;
            p = q;
        } else {
            Py_INCREF(iid);
        }
        for (Py_ssize_t k = 0; k < n_rows; k++) {
            if (PyList_Append(inference_ids, iid) < 0) {
                Py_DECREF(iid);
                goto done;
            }
        }
        Py_DECREF(iid);
        if (!lit(&p, end, LIT(INF_TIME)) || (q = string_end(p, end)) == NULL) {
            rejected = 1;
            break;
        }
        /* consecutive records mostly share their (second-resolution) time */
        int32_t tcode = last_time_code;
        if (tcode < 0 || q - p != last_time_len || memcmp(p, last_time, (size_t)(q - p)) != 0) {
            tcode = intern(&time_table, p, q - p);
            if (tcode < 0) {
                goto done;
            }
            last_time = p;
            last_time_len = q - p;
            last_time_code = tcode;
        }
        for (Py_ssize_t k = r0; k < r; k++) {
            time_out[k] = tcode;
        }
        p = q;
        if (!lit(&p, end, LIT(TAIL))) {
            rejected = 1;
            break;
        }
    }
    if (rejected || p != end) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    PyObject *names = PyList_New(n_cat);
    if (names == NULL) {
        goto done;
    }
    for (Py_ssize_t k = 0; k < n_cat; k++) {
        PyList_SetItem(names, k, tables[k].names);
        tables[k].names = NULL;
    }
    if (!any_inference_id) {
        Py_DECREF(inference_ids);
        inference_ids = Py_NewRef(Py_None);
    }
    result = Py_BuildValue("(NOON)", names, event_ids, inference_ids, time_table.names);
    time_table.names = NULL;

done:
    if (tables != NULL) {
        for (Py_ssize_t k = 0; k < n_cat; k++) {
            table_free(&tables[k]);
        }
        PyMem_Free(tables);
    }
    table_free(&time_table);
    Py_XDECREF(event_ids);
    Py_XDECREF(inference_ids);
    if (num.held) PyBuffer_Release(&num.buf);
    if (cat.held) PyBuffer_Release(&cat.buf);
    if (pred.held) PyBuffer_Release(&pred.buf);
    if (times.held) PyBuffer_Release(&times.buf);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&kinds);
    return result;
}

/* How many bytes c [start, end) holds (memchr from one to the next). */
static Py_ssize_t count_byte(const char *start, const char *end, char c) {
    Py_ssize_t n = 0;
    for (const char *p = start; (p = memchr(p, c, (size_t)(end - p))) != NULL; p++) {
        n++;
    }
    return n;
}

PyDoc_STRVAR(newlines_doc,
"newlines(buf) -> bytearray\n"
"\n"
"The positions of the newline bytes of buf, as native int64 values.");

static PyObject *newlines(PyObject *Py_UNUSED(self), PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *start = (const char *)b.buf;
    const char *end = start + b.len;
    const Py_ssize_t n = count_byte(start, end, '\n');
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    if (out != NULL) {
        int64_t *pos = (int64_t *)PyByteArray_AsString(out);
        Py_ssize_t i = 0;
        for (const char *p = start; i < n && (p = memchr(p, '\n', (size_t)(end - p))) != NULL;
             p++) {
            pos[i++] = (int64_t)(p - start);
        }
    }
    PyBuffer_Release(&b);
    return out;
}

PyDoc_STRVAR(row_breaks_doc,
"row_breaks(buf) -> int\n"
"\n"
"How many escaped newlines (a backslash, then n) and opening brackets buf holds:\n"
"with the line count, an upper bound on the rows the lines' payloads hold (CSV rows\n"
"after the first are each after an escaped newline; a JSON row opens with a bracket).");

static PyObject *row_breaks(PyObject *Py_UNUSED(self), PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *start = (const char *)b.buf;
    const char *end = start + b.len;
    Py_ssize_t n = 0;
    for (const char *p = start; (p = memchr(p, '\\', (size_t)(end - p))) != NULL; p++) {
        n += (p + 1 < end && p[1] == 'n');
    }
    n += count_byte(start, end, '[');
    PyBuffer_Release(&b);
    return PyLong_FromSsize_t(n);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {"newlines", newlines, METH_O, newlines_doc},
    {"row_breaks", row_breaks, METH_O, row_breaks_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "driftloop._scan",
    .m_doc = "One-pass reader of SageMaker capture lines in the exact layout (see scan).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__scan(void) {
    init_classes();
    return PyModule_Create(&module);
}
