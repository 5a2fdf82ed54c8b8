/* The access log's JSON line, written in C from the ended exchange: what
 * hopwire.telemetry.accesslog.Writer.doc and orjson.dumps make for the default fields (every
 * field kept, no request header), the same document (tests/unit/test_accesslog_line.py
 * compares them on random exchanges), and with accessLog.otlp the same fields as a LogRecord.
 * The Python path stays the reference and serves every other setting (fields dropped, headers
 * kept, the common format).
 *
 * How a line is made cheaply (about a third of the first compiled version's instructions):
 * - the fields that never change for a router (its entrypoint, router and service names), for
 *   a server (its URL) or for a connection (the client's address, the scheme, TLS) are written
 *   once, as a "part" (JSON and protobuf bytes) kept on that object, and copied into each line;
 * - the exchange's attributes are read at their __slots__ offsets, borrowed (nothing runs
 *   meanwhile that could change them);
 * - the room for the whole line is reserved once, and the line is written into the bytes
 *   object that the writer sends (no copy).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include "_cbuf.h"
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HOT static inline __attribute__((always_inline))

/* ---- raw writers: the caller has reserved the room; each returns the new end ------------ */

static const char PAIRS[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                            "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                            "8081828384858687888990919293949596979899";
static const char HEX[] = "0123456789abcdef";

/* the number of decimal digits of u */
HOT int digits(unsigned long long u) {
    int n = 1;
    while (u >= 10000) {
        u /= 10000;
        n += 4;
    }
    return n + (u >= 10) + (u >= 100) + (u >= 1000);
}

/* decimal digits of v (at most 20 bytes) */
HOT char *w_int(char *o, long long v) {
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    if (v < 0)
        *o++ = '-';
    int n = digits(u);
    char *end = o + n;
    o = end;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100);
        u /= 100;
        *--o = PAIRS[2 * d + 1];
        *--o = PAIRS[2 * d];
    }
    if (u >= 10) {
        *--o = PAIRS[2 * u + 1];
        *--o = PAIRS[2 * u];
    } else {
        *--o = (char)('0' + u);
    }
    return end;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* whether any of eight bytes is a control character, '"' or '\\' (a zero byte after the
   subtraction or the XOR sets that byte's high bit; bytes of 0x80 and above never match) */
HOT int needs_escape(uint64_t x) {
    uint64_t control = (x - 0x20 * ONES) & ~x;
    uint64_t quote = x ^ ('"' * ONES), backslash = x ^ ('\\' * ONES);
    return ((control | ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash)) & HIGHS) != 0;
}

/* 1: the byte is written escaped in a JSON string (control characters, '"', '\\') */
static unsigned char ESCAPED[256];

static char *w_escape(char *o, unsigned char c) {
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    default:
        *o++ = 'u';
        *o++ = '0';
        *o++ = '0';
        *o++ = HEX[c >> 4];
        *o++ = HEX[c & 15];
    }
    return o;
}

/* the inside of a JSON string of UTF-8 bytes, escaped as orjson escapes (room: 6n) */
HOT char *w_text(char *o, const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) { /* the run that needs no escape, eight bytes at a time */
        uint64_t x;
        memcpy(&x, s + i, 8);
        if (needs_escape(x))
            break;
        memcpy(o, s + i, 8);
        o += 8;
    }
    for (; i < n; i++) {
        unsigned char c = s[i];
        if (ESCAPED[c])
            o = w_escape(o, c);
        else
            *o++ = (char)c;
    }
    return o;
}

/* the inside of a JSON string of latin-1 bytes (the request target as received): each byte
   of 0x80-0xFF is a code point of two UTF-8 bytes (room: 6n) */
static char *w_latin1(char *o, const unsigned char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            *o++ = (char)(0xC0 | (c >> 6));
            *o++ = (char)(0x80 | (c & 0x3F));
        } else if (ESCAPED[c]) {
            o = w_escape(o, c);
        } else {
            *o++ = (char)c;
        }
    }
    return o;
}

/* a constant: its bytes, without a call */
#define W_LIT(o, s) (memcpy((o), (s), sizeof(s) - 1), (o) + sizeof(s) - 1)

HOT char *w_varint(char *p, uint64_t n) {
    while (n > 0x7F) {
        *p++ = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    *p++ = (char)n;
    return p;
}

/* ---- protobuf: a LogRecord's attributes (otlp.log_record's layout) ----------------------- */

/* The head of a KeyValue entry (tag 6 of LogRecord) whose AnyValue body is ``alen`` bytes:
   the entry's tag and length, the key, the value's tag and length (room: 24 + klen). */
HOT char *p_head(char *p, const char *key, Py_ssize_t klen, Py_ssize_t alen) {
    Py_ssize_t inner = 1 + vsize(klen) + klen + 1 + vsize(alen) + alen;
    *p++ = 0x32;
    p = w_varint(p, inner);
    *p++ = 0x0a;
    p = w_varint(p, klen);
    memcpy(p, key, klen);
    p += klen;
    *p++ = 0x12;
    return w_varint(p, alen);
}

/* KeyValue of a string value (room: 36 + klen + n) */
HOT char *p_str(char *p, const char *key, Py_ssize_t klen, const char *v, Py_ssize_t n) {
    p = p_head(p, key, klen, 1 + vsize(n) + n);
    *p++ = 0x0a;
    p = w_varint(p, n);
    memcpy(p, v, n);
    return p + n;
}

/* KeyValue of an int value (room: 36 + klen) */
HOT char *p_int(char *p, const char *key, Py_ssize_t klen, long long v) {
    p = p_head(p, key, klen, 1 + vsize((uint64_t)v));
    *p++ = 0x18;
    return w_varint(p, (uint64_t)v);
}

/* KeyValue of a latin-1 string value, as UTF-8 (``m``: its UTF-8 length) */
static char *p_latin1(char *p, const char *key, Py_ssize_t klen, const unsigned char *s,
                      Py_ssize_t n, Py_ssize_t m) {
    p = p_head(p, key, klen, 1 + vsize(m) + m);
    *p++ = 0x0a;
    p = w_varint(p, m);
    if (m == n) {
        memcpy(p, s, n);
        return p + n;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            *p++ = (char)(0xC0 | (c >> 6));
            *p++ = (char)(0x80 | (c & 0x3F));
        } else {
            *p++ = (char)c;
        }
    }
    return p;
}

/* a field's JSON key after the previous field, and its attribute key */
#define JKEY(o, name) W_LIT(o, ",\"" name "\":")
#define PKEY(name) name, (Py_ssize_t)(sizeof(name) - 1)

/* ---- a bytes object being filled: the line is written where it is sent from ------------- */

typedef struct {
    PyObject *obj; /* NULL until the first reservation */
    Py_ssize_t len;
    Py_ssize_t cap;
} Bytes;

static int bytes_grow(Bytes *b, Py_ssize_t more) {
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more)
        cap *= 2;
    if (b->obj == NULL) {
        b->obj = PyBytes_FromStringAndSize(NULL, cap);
        if (b->obj == NULL)
            return -1;
    } else if (_PyBytes_Resize(&b->obj, cap) < 0) {
        return -1; /* (the object is gone) */
    }
    b->cap = cap;
    return 0;
}

HOT int bytes_room(Bytes *b, Py_ssize_t more) {
    return b->len + more <= b->cap ? 0 : bytes_grow(b, more);
}

#define AT(b) (PyBytes_AS_STRING((b)->obj) + (b)->len)

/* the bytes written (a new reference; ``b`` is emptied) */
static PyObject *bytes_done(Bytes *b) {
    if (b->obj == NULL)
        return PyBytes_FromStringAndSize(NULL, 0);
    if (_PyBytes_Resize(&b->obj, b->len) < 0)
        return NULL;
    PyObject *out = b->obj;
    b->obj = NULL;
    b->len = b->cap = 0;
    return out;
}

static void bytes_free(Bytes *b) {
    Py_CLEAR(b->obj);
    b->len = b->cap = 0;
}

/* interned attribute names */
enum {
    A_T0, A_T1, A_ATTEMPTS, A_SERVER, A_URL, A_ORIGIN_STATUS, A_ORIGIN_T0, A_DOWN,
    A_TRACE, A_SAMPLED, A_TID, A_SPAN_RAW, A_CLIENT_IP, A_CLIENT_PORT, A_METHOD, A_PATH_QUERY,
    A_HTTP10, A_HOST, A_REQ_BYTES, A_STATUS, A_RESP_BYTES, A_EP, A_SCHEME_STR, A_TLS,
    A_TLS_FIELDS, A_ENTRYPOINT, A_ROUTER, A_SERVICE, A_TIMED, A_FORMAT, A_VERSION,
    A_LOG_NAMES, A_LOG_URL, A_LOG_FIELDS, A_COUNT
};
static const char *NAMES[A_COUNT] = {
    "t0", "t1", "attempts", "server", "url", "origin_status", "origin_t0", "down",
    "trace", "sampled", "tid", "span_raw", "client_ip", "client_port", "method", "path_query",
    "http10", "host", "req_bytes", "status", "resp_bytes", "ep", "scheme_str", "tls",
    "tls_fields", "entrypoint", "router", "service", "timed", "format", "version",
    "log_names", "log_url", "log_fields",
};
static PyObject *names[A_COUNT];

static SlotCache slots[A_COUNT]; /* where each name is found (_cbuf.h) */

/* the references taken by the reads that were not a slot's (a property, a plain attribute),
   released together */
typedef struct {
    PyObject *held[48];
    int n;
} Held;

static void release(Held *h) {
    for (int i = 0; i < h->n; i++)
        Py_DECREF(h->held[i]);
    h->n = 0;
}

static int hold(Held *h, PyObject *v) {
    if (h->n == (int)(sizeof h->held / sizeof h->held[0])) {
        Py_DECREF(v);
        PyErr_SetString(PyExc_SystemError, "access log: too many attributes held");
        return -1;
    }
    h->held[h->n++] = v;
    return 0;
}

static PyObject *peek_slow(Held *h, PyObject *o, int name) {
    PyObject *v = slot_get(&slots[name], o, names[name]);
    if (v == NULL || hold(h, v) < 0)
        return NULL;
    return v;
}

/* o.<name>, borrowed: read at the slot's offset when it is one (the exchange, and what it
   refers to, stay as they are while a line is made: only reads happen meanwhile) */
HOT PyObject *peek(Held *h, PyObject *o, int name) {
    PyObject *v = slot_peek(&slots[name], o, names[name]);
    return v != NULL ? v : peek_slow(h, o, name);
}

/* o.<name> if o has it (*out NULL if not), borrowed; -1 on an error */
static int peek_optional(Held *h, PyObject *o, int name, PyObject **out) {
    PyObject *v = slot_peek(&slots[name], o, names[name]);
    if (v != NULL) {
        *out = v;
        return 0;
    }
    if (_PyObject_LookupAttr(o, names[name], &v) < 0)
        return -1;
    if (v != NULL && hold(h, v) < 0)
        return -1;
    *out = v;
    return 0;
}

/* the UTF-8 bytes of a str */
typedef struct {
    const char *s;
    Py_ssize_t n;
} Text;

HOT int text_of(PyObject *v, Text *t) {
    if (PyUnicode_Check(v) && PyUnicode_IS_COMPACT_ASCII(v)) { /* its bytes are its UTF-8 */
        t->s = (const char *)PyUnicode_DATA(v);
        t->n = PyUnicode_GET_LENGTH(v);
        return 0;
    }
    if (!PyUnicode_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "access log: expected str");
        return -1;
    }
    t->s = PyUnicode_AsUTF8AndSize(v, &t->n);
    return t->s == NULL ? -1 : 0;
}

HOT int int_of(PyObject *v, long long *out) {
    *out = PyLong_AsLongLong(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int double_of(PyObject *v, double *out) {
    *out = PyFloat_AsDouble(v);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* ---- parts: the fields fixed for a router, a server, a connection ------------------------
 *
 * A part is a bytes object: a 17-byte head (flags, then the lengths of four pieces, 32-bit
 * little-endian), then the pieces: JSON A, JSON B, attributes A, attributes B.  A is written
 * where the part's first fields go in the line, B where its last ones go (a connection's
 * client address comes early, its scheme and TLS fields last).  It is kept on its object
 * (``log_names``, ``log_url``, ``log_fields``: None until the first line) and made anew for
 * each line where the object has no such attribute. */

enum { PART_H2 = 1 }; /* flags: the connection is an HTTP/2 stream's */

typedef struct {
    const char *json[2];
    const char *pb[2];
    Py_ssize_t jn[2], pn[2];
    int flags;
} Part;

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void part_view(PyObject *bytes, Part *part) {
    const unsigned char *h = (const unsigned char *)PyBytes_AS_STRING(bytes);
    const char *at = (const char *)h + 17;
    part->flags = h[0];
    for (int i = 0; i < 2; i++) {
        part->jn[i] = le32(h + 1 + 4 * i);
        part->pn[i] = le32(h + 9 + 4 * i);
    }
    part->json[0] = at;
    part->json[1] = at + part->jn[0];
    part->pb[0] = part->json[1] + part->jn[1];
    part->pb[1] = part->pb[0] + part->pn[0];
}

/* A part being made: its four pieces, each a Buf (cold: once per router, server, connection) */
typedef struct {
    Buf j[2], p[2];
    int flags;
} Making;

static void making_free(Making *m) {
    for (int i = 0; i < 2; i++) {
        PyMem_Free(m->j[i].data);
        PyMem_Free(m->p[i].data);
    }
}

/* a string field into piece ``i`` (None: JSON null, no attribute) */
static int make_str(Making *m, int i, const char *key, PyObject *v) {
    Py_ssize_t klen = (Py_ssize_t)strlen(key);
    Buf *j = &m->j[i], *p = &m->p[i];
    if (v == Py_None) {
        if (buf_reserve(j, klen + 16) < 0)
            return -1;
        j->len += snprintf(j->data + j->len, klen + 16, ",\"%s\":null", key);
        return 0;
    }
    Text t;
    if (text_of(v, &t) < 0 || buf_reserve(j, klen + 6 + 6 * t.n) < 0 ||
        buf_reserve(p, 36 + klen + t.n) < 0)
        return -1;
    char *o = j->data + j->len;
    *o++ = ',';
    *o++ = '"';
    memcpy(o, key, klen);
    o += klen;
    o = W_LIT(o, "\":\"");
    o = w_text(o, (const unsigned char *)t.s, t.n);
    *o++ = '"';
    j->len = o - j->data;
    p->len = p_str(p->data + p->len, key, klen, t.s, t.n) - p->data;
    return 0;
}

static int make_int(Making *m, int i, const char *key, PyObject *v) {
    long long n;
    Py_ssize_t klen = (Py_ssize_t)strlen(key);
    Buf *j = &m->j[i], *p = &m->p[i];
    if (int_of(v, &n) < 0 || buf_reserve(j, klen + 26) < 0 || buf_reserve(p, 36 + klen) < 0)
        return -1;
    char *o = j->data + j->len;
    *o++ = ',';
    *o++ = '"';
    memcpy(o, key, klen);
    o += klen;
    *o++ = '"';
    *o++ = ':';
    j->len = w_int(o, n) - j->data;
    p->len = p_int(p->data + p->len, key, klen, n) - p->data;
    return 0;
}

/* the part's bytes (a new reference) */
static PyObject *making_done(Making *m) {
    Py_ssize_t size = 17;
    for (int i = 0; i < 2; i++)
        size += m->j[i].len + m->p[i].len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    unsigned char *h = (unsigned char *)PyBytes_AS_STRING(out);
    h[0] = (unsigned char)m->flags;
    Buf *pieces[4] = {&m->j[0], &m->j[1], &m->p[0], &m->p[1]};
    char *at = (char *)h + 17;
    for (int i = 0; i < 4; i++) {
        uint32_t n = (uint32_t)pieces[i]->len;
        for (int k = 0; k < 4; k++)
            h[1 + 4 * i + k] = (unsigned char)(n >> (8 * k));
        if (n)
            memcpy(at, pieces[i]->data, n);
        at += n;
    }
    return out;
}

/* a router's names: entryPointName, RouterName, ServiceName (an empty one: null) */
static PyObject *make_names(Held *h, PyObject *logger) {
    Making m = {0};
    PyObject *out = NULL, *v;
    const char *keys[3] = {"entryPointName", "RouterName", "ServiceName"};
    int attrs[3] = {A_ENTRYPOINT, A_ROUTER, A_SERVICE};
    for (int i = 0; i < 3; i++) {
        if ((v = peek(h, logger, attrs[i])) == NULL)
            goto done;
        int empty = i > 0 && PyUnicode_Check(v) && PyUnicode_GET_LENGTH(v) == 0;
        if (make_str(&m, 0, keys[i], empty ? Py_None : v) < 0)
            goto done;
    }
    out = making_done(&m);
done:
    making_free(&m);
    return out;
}

/* a server's URL: ServiceURL */
static PyObject *make_url(Held *h, PyObject *server) {
    Making m = {0};
    PyObject *out = NULL, *url = peek(h, server, A_URL);
    if (url != NULL && make_str(&m, 0, "ServiceURL", url) == 0)
        out = making_done(&m);
    making_free(&m);
    return out;
}

/* a connection's fields: ClientHost, ClientPort (A); RequestScheme and the TLS fields (B);
   whether it is an HTTP/2 stream's (flags).  A TLS connection's fields are read from it
   (tls_fields(), once per connection). */
static PyObject *make_fields(Held *h, PyObject *down) {
    Making m = {0};
    PyObject *out = NULL, *v, *ep;
    if ((v = peek(h, down, A_CLIENT_IP)) == NULL || make_str(&m, 0, "ClientHost", v) < 0 ||
        (v = peek(h, down, A_CLIENT_PORT)) == NULL || make_int(&m, 0, "ClientPort", v) < 0 ||
        (ep = peek(h, down, A_EP)) == NULL || (v = peek(h, ep, A_SCHEME_STR)) == NULL ||
        make_str(&m, 1, "RequestScheme", v) < 0 || (v = peek(h, ep, A_TLS)) == NULL)
        goto done;
    int tls = PyObject_IsTrue(v);
    if (tls < 0)
        goto done;
    if (tls) {
        PyObject *fields = PyObject_CallMethodNoArgs(down, names[A_TLS_FIELDS]);
        if (fields == NULL || hold(h, fields) < 0)
            goto done;
        if (fields != Py_None) {
            if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != 3) {
                PyErr_SetString(PyExc_TypeError, "access log: TLS fields are a 3-tuple");
                goto done;
            }
            if (make_str(&m, 1, "TLSVersion", PyTuple_GET_ITEM(fields, 0)) < 0 ||
                make_str(&m, 1, "TLSCipher", PyTuple_GET_ITEM(fields, 1)) < 0)
                goto done;
            PyObject *subject = PyTuple_GET_ITEM(fields, 2);
            if (subject != Py_None && make_str(&m, 1, "TLSClientSubject", subject) < 0)
                goto done;
        }
    }
    if ((v = peek(h, down, A_VERSION)) == NULL)
        goto done;
    if (PyUnicode_Check(v) && PyUnicode_GET_LENGTH(v) == 1 && PyUnicode_READ_CHAR(v, 0) == '2')
        m.flags |= PART_H2;
    out = making_done(&m);
done:
    making_free(&m);
    return out;
}

/* the part kept on ``owner`` as ``name``, made by ``make`` from ``source`` and kept there
   when it is not yet (the attribute is None), or made for this line only (no such
   attribute) */
static int part_of(Held *h, PyObject *owner, int name, PyObject *(*make)(Held *, PyObject *),
                   PyObject *source, Part *part) {
    PyObject *kept;
    if (peek_optional(h, owner, name, &kept) < 0)
        return -1;
    if (kept != NULL && PyBytes_CheckExact(kept)) {
        part_view(kept, part);
        return 0;
    }
    PyObject *made = make(h, source);
    if (made == NULL || hold(h, made) < 0)
        return -1;
    if (kept == Py_None && slot_set(&slots[name], owner, names[name], made) < 0)
        PyErr_Clear(); /* (not settable: made again next time) */
    part_view(made, part);
    return 0;
}

/* ---- the line ---------------------------------------------------------------------------- */

/* StartUTC's text, 2026-12-07T07:46:22.123456Z: the date and time made once a second */
static long long cached_second = -1;
static char cached_prefix[20];

static int start_text(double wall, char out[27]) {
    double whole = floor(wall);
    long long second = (long long)whole;
    if (second != cached_second) {
        time_t t = (time_t)second;
        struct tm tm;
        char tmp[32];
        if (gmtime_r(&t, &tm) == NULL ||
            strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm) != 19) {
            PyErr_SetString(PyExc_ValueError, "access log: start time out of range");
            return -1;
        }
        memcpy(cached_prefix, tmp, 19);
        cached_second = second;
    }
    memcpy(out, cached_prefix, 19);
    unsigned micro = (unsigned)((wall - whole) * 1e6);
    if (micro > 999999)
        micro = 999999;
    out[19] = '.';
    for (int d = 25; d > 19; d -= 2) {
        unsigned pair = micro % 100;
        micro /= 100;
        out[d] = PAIRS[2 * pair + 1];
        out[d - 1] = PAIRS[2 * pair];
    }
    out[26] = 'Z';
    return 0;
}

/* what a line is made of, read from the exchange before anything is written */
typedef struct {
    char start[27];
    long long nanos, origin, req_bytes, status, resp_bytes, origin_status, retries;
    int attempted; /* a backend attempt: ServiceURL, OriginStatus, OriginDuration */
    Part names, url, conn;
    Text method, host;
    const unsigned char *path;
    Py_ssize_t path_n, path_high; /* the target's bytes, those of 0x80 and above */
    const char *protocol;
    const char *tid, *sid; /* a sampled trace's raw ids, or NULL */
} Line;

/* Every field of an ended exchange read into ``l``; *wall: the wall-clock start */
static int read_line(Line *l, Held *h, PyObject *ex, PyObject *logger, double offset,
                     double *wall) {
    PyObject *v, *down, *trace;
    double t0, t1;
    long long attempts;
    if ((v = peek(h, ex, A_T0)) == NULL || double_of(v, &t0) < 0 ||
        (v = peek(h, ex, A_T1)) == NULL || double_of(v, &t1) < 0 ||
        (v = peek(h, ex, A_ATTEMPTS)) == NULL || int_of(v, &attempts) < 0)
        return -1;
    *wall = t0 + offset;
    if (start_text(t0 + offset, l->start) < 0)
        return -1;
    l->nanos = (long long)((t1 - t0) * 1e9);
    l->retries = attempts > 1 ? attempts - 1 : 0;
    l->attempted = attempts > 0;
    l->origin = 0;
    if (part_of(h, logger, A_LOG_NAMES, make_names, logger, &l->names) < 0)
        return -1;
    if (l->attempted) {
        PyObject *server;
        double origin_t0;
        if ((server = peek(h, ex, A_SERVER)) == NULL ||
            part_of(h, server, A_LOG_URL, make_url, server, &l->url) < 0 ||
            (v = peek(h, ex, A_ORIGIN_STATUS)) == NULL || int_of(v, &l->origin_status) < 0 ||
            (v = peek(h, ex, A_ORIGIN_T0)) == NULL || double_of(v, &origin_t0) < 0)
            return -1;
        /* as Traefik's: from the backend's turn to the end of the exchange */
        l->origin = (long long)((t1 - origin_t0) * 1e9);
    }
    if ((down = peek(h, ex, A_DOWN)) == NULL ||
        part_of(h, down, A_LOG_FIELDS, make_fields, down, &l->conn) < 0)
        return -1;
    if ((v = peek(h, ex, A_METHOD)) == NULL || text_of(v, &l->method) < 0 ||
        (v = peek(h, ex, A_PATH_QUERY)) == NULL)
        return -1;
    if (!PyBytes_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "access log: expected bytes");
        return -1;
    }
    l->path = (const unsigned char *)PyBytes_AS_STRING(v);
    l->path_n = PyBytes_GET_SIZE(v);
    l->path_high = 0;
    for (Py_ssize_t i = 0; i < l->path_n; i++)
        l->path_high += l->path[i] >> 7;
    if ((v = peek(h, ex, A_HTTP10)) == NULL)
        return -1;
    l->protocol = v == Py_True                    ? "HTTP/1.0"
                  : (l->conn.flags & PART_H2) != 0 ? "HTTP/2.0"
                                                   : "HTTP/1.1";
    if (v != Py_True && v != Py_False) { /* (a truth value of another type) */
        int on = PyObject_IsTrue(v);
        if (on < 0)
            return -1;
        if (on)
            l->protocol = "HTTP/1.0";
    }
    if ((v = peek(h, ex, A_HOST)) == NULL || text_of(v, &l->host) < 0 ||
        (v = peek(h, ex, A_REQ_BYTES)) == NULL || int_of(v, &l->req_bytes) < 0 ||
        (v = peek(h, ex, A_STATUS)) == NULL || int_of(v, &l->status) < 0 ||
        (v = peek(h, ex, A_RESP_BYTES)) == NULL || int_of(v, &l->resp_bytes) < 0 ||
        (trace = peek(h, ex, A_TRACE)) == NULL)
        return -1;
    l->tid = l->sid = NULL;
    if (trace != Py_None) {
        if ((v = peek(h, trace, A_SAMPLED)) == NULL)
            return -1;
        int sampled = v == Py_True ? 1 : v == Py_False ? 0 : PyObject_IsTrue(v);
        if (sampled < 0)
            return -1;
        if (sampled) {
            PyObject *tid = peek(h, trace, A_TID), *sid = tid ? peek(h, trace, A_SPAN_RAW) : NULL;
            if (sid == NULL)
                return -1;
            if (!PyBytes_Check(tid) || PyBytes_GET_SIZE(tid) != 16 || !PyBytes_Check(sid) ||
                PyBytes_GET_SIZE(sid) != 8) {
                PyErr_SetString(PyExc_ValueError, "access log: an id of the wrong size");
                return -1;
            }
            l->tid = PyBytes_AS_STRING(tid);
            l->sid = PyBytes_AS_STRING(sid);
        }
    }
    return 0;
}

/* the room the JSON line takes at most (the escapes: 6 bytes for one) */
static Py_ssize_t json_room(const Line *l) {
    return 1024 + l->names.jn[0] + (l->attempted ? l->url.jn[0] : 0) + l->conn.jn[0] +
           l->conn.jn[1] + 6 * (l->method.n + l->host.n + l->path_n);
}

static char *w_hex(char *o, const char *raw, int n) {
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];
        *o++ = HEX[c >> 4];
        *o++ = HEX[c & 15];
    }
    return o;
}

/* the JSON line, from '{' to '}' (no newline) */
static char *w_line(char *o, const Line *l) {
    o = W_LIT(o, "{\"StartUTC\":\"");
    memcpy(o, l->start, 27);
    o += 27;
    *o++ = '"';
    o = w_int(JKEY(o, "Duration"), l->nanos);
    memcpy(o, l->names.json[0], l->names.jn[0]);
    o += l->names.jn[0];
    if (l->attempted) {
        memcpy(o, l->url.json[0], l->url.jn[0]);
        o += l->url.jn[0];
    } else {
        o = W_LIT(o, ",\"ServiceURL\":null");
    }
    memcpy(o, l->conn.json[0], l->conn.jn[0]);
    o += l->conn.jn[0];
    o = W_LIT(o, ",\"RequestMethod\":\"");
    o = w_text(o, (const unsigned char *)l->method.s, l->method.n);
    o = W_LIT(o, "\",\"RequestPath\":\"");
    o = l->path_high ? w_latin1(o, l->path, l->path_n) : w_text(o, l->path, l->path_n);
    o = W_LIT(o, "\",\"RequestProtocol\":\"");
    memcpy(o, l->protocol, 8);
    o += 8;
    o = W_LIT(o, "\",\"RequestHost\":\"");
    o = w_text(o, (const unsigned char *)l->host.s, l->host.n);
    *o++ = '"';
    o = w_int(JKEY(o, "RequestContentSize"), l->req_bytes);
    o = w_int(JKEY(o, "DownstreamStatus"), l->status);
    o = w_int(JKEY(o, "DownstreamContentSize"), l->resp_bytes);
    if (l->attempted) {
        o = w_int(JKEY(o, "OriginStatus"), l->origin_status);
        o = w_int(JKEY(o, "OriginDuration"), l->origin);
    } else {
        o = W_LIT(o, ",\"OriginStatus\":null,\"OriginDuration\":null");
    }
    o = w_int(JKEY(o, "Overhead"), l->nanos - l->origin);
    o = w_int(JKEY(o, "RetryAttempts"), l->retries);
    if (l->tid != NULL) {
        o = w_hex(W_LIT(o, ",\"trace_id\":\""), l->tid, 16);
        o = w_hex(W_LIT(o, "\",\"span_id\":\""), l->sid, 8);
        *o++ = '"';
    }
    memcpy(o, l->conn.json[1], l->conn.jn[1]);
    o += l->conn.jn[1];
    *o++ = '}';
    return o;
}

/* the room the attributes take at most */
static Py_ssize_t pb_room(const Line *l) {
    return 2048 + l->names.pn[0] + (l->attempted ? l->url.pn[0] : 0) + l->conn.pn[0] +
           l->conn.pn[1] + l->method.n + l->host.n + 2 * l->path_n;
}

/* the attributes: the line's fields but its nulls, in its order */
static char *p_line(char *p, const Line *l) {
    p = p_str(p, PKEY("StartUTC"), l->start, 27);
    p = p_int(p, PKEY("Duration"), l->nanos);
    memcpy(p, l->names.pb[0], l->names.pn[0]);
    p += l->names.pn[0];
    if (l->attempted) {
        memcpy(p, l->url.pb[0], l->url.pn[0]);
        p += l->url.pn[0];
    }
    memcpy(p, l->conn.pb[0], l->conn.pn[0]);
    p += l->conn.pn[0];
    p = p_str(p, PKEY("RequestMethod"), l->method.s, l->method.n);
    p = p_latin1(p, PKEY("RequestPath"), l->path, l->path_n, l->path_n + l->path_high);
    p = p_str(p, PKEY("RequestProtocol"), l->protocol, 8);
    p = p_str(p, PKEY("RequestHost"), l->host.s, l->host.n);
    p = p_int(p, PKEY("RequestContentSize"), l->req_bytes);
    p = p_int(p, PKEY("DownstreamStatus"), l->status);
    p = p_int(p, PKEY("DownstreamContentSize"), l->resp_bytes);
    if (l->attempted) {
        p = p_int(p, PKEY("OriginStatus"), l->origin_status);
        p = p_int(p, PKEY("OriginDuration"), l->origin);
    }
    p = p_int(p, PKEY("Overhead"), l->nanos - l->origin);
    p = p_int(p, PKEY("RetryAttempts"), l->retries);
    if (l->tid != NULL) {
        char hex[32];
        w_hex(hex, l->tid, 16);
        p = p_str(p, PKEY("trace_id"), hex, 32);
        w_hex(hex, l->sid, 8);
        p = p_str(p, PKEY("span_id"), hex, 16);
    }
    memcpy(p, l->conn.pb[1], l->conn.pn[1]);
    return p + l->conn.pn[1];
}

/* One exchange's line, newline included, appended to ``b`` */
static int one_line(Bytes *b, PyObject *ex, PyObject *logger, double offset) {
    Held h = {.n = 0};
    Line l;
    double wall;
    int rc = -1;
    if (read_line(&l, &h, ex, logger, offset, &wall) == 0 && bytes_room(b, json_room(&l)) == 0) {
        char *o = w_line(AT(b), &l);
        *o++ = '\n';
        b->len = o - PyBytes_AS_STRING(b->obj);
        rc = 0;
    }
    release(&h);
    return rc;
}

/* One exchange's line (newline included) appended to ``b`` and its LogRecord, as a
   ScopeLogs.log_records entry, to ``r``.  The record is what otlp.log_record makes of the line
   (body), Writer.doc (attributes, None left out), severity 9 INFO, the start as time, and a
   sampled request's trace and SERVER span ids. */
static int one_record(Bytes *b, Bytes *r, PyObject *ex, PyObject *logger, double offset,
                      uint64_t observed) {
    Held h = {.n = 0};
    Line l;
    double wall;
    int rc = -1;
    if (read_line(&l, &h, ex, logger, offset, &wall) < 0)
        goto done;
    Py_ssize_t jroom = json_room(&l), proom = pb_room(&l);
    if (bytes_room(b, jroom) < 0 || bytes_room(r, 24 + 11 + jroom + proom + 64) < 0)
        goto done;
    /* the line first, where the file's lines go; the record after it is sized from it */
    char *line = AT(b);
    Py_ssize_t n = w_line(line, &l) - line;
    /* the attributes at the record's end of room, then moved into place */
    char *attrs = AT(r) + 24 + 11 + jroom + 64;
    Py_ssize_t alen = p_line(attrs, &l) - attrs;
    Py_ssize_t body = 1 + vsize(n) + n;
    Py_ssize_t size = 9 + 9 + 2 + 6 + (1 + vsize(body) + body) + alen + (l.tid ? 5 + 18 + 10 : 0);
    uint64_t when = (uint64_t)(wall * 1e9);
    char *p = AT(r);
    *p++ = 0x12; /* ScopeLogs.log_records */
    p = w_varint(p, size);
    char *at = p;
    *p++ = 0x09; /* time_unix_nano, fixed64 */
    for (int i = 0; i < 8; i++)
        *p++ = (char)((when >> (8 * i)) & 0xFF);
    *p++ = 0x59; /* observed_time_unix_nano */
    for (int i = 0; i < 8; i++)
        *p++ = (char)((observed >> (8 * i)) & 0xFF);
    *p++ = 0x10; /* severity_number: INFO */
    *p++ = 9;
    p = W_LIT(p, "\x1a\x04INFO"); /* severity_text */
    *p++ = 0x2a;                  /* body: AnyValue{string_value} */
    p = w_varint(p, body);
    *p++ = 0x0a;
    p = w_varint(p, n);
    memcpy(p, line, n);
    p += n;
    memmove(p, attrs, alen);
    p += alen;
    if (l.tid != NULL) {
        p = W_LIT(p, "\x45\x01\x00\x00\x00\x4a\x10"); /* flags: sampled; trace_id */
        memcpy(p, l.tid, 16);
        p += 16;
        p = W_LIT(p, "\x52\x08"); /* span_id */
        memcpy(p, l.sid, 8);
        p += 8;
    }
    if (p - at != size) {
        PyErr_SetString(PyExc_SystemError, "access log: LogRecord size mismatch");
        goto done;
    }
    r->len = p - PyBytes_AS_STRING(r->obj);
    line[n] = '\n';
    b->len += n + 1;
    rc = 0;
done:
    release(&h);
    return rc;
}

/* the (ex, logger) pairs of a list */
static int pair(PyObject *pending, Py_ssize_t i, PyObject **ex, PyObject **logger) {
    PyObject *item = PyList_GET_ITEM(pending, i);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_SetString(PyExc_TypeError, "access log: pending items are (exchange, logger)");
        return -1;
    }
    *ex = PyTuple_GET_ITEM(item, 0);
    *logger = PyTuple_GET_ITEM(item, 1);
    return 0;
}

static int offset_of(PyObject *arg, double *offset) {
    *offset = PyFloat_AsDouble(arg);
    return *offset == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int observed_of(PyObject *arg, uint64_t *observed) {
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *observed = v;
    return 0;
}

/* json_line(ex, logger, offset) -> bytes: the line of an ended exchange, newline included */
static PyObject *json_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    double offset;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "json_line(ex, logger, offset)");
        return NULL;
    }
    if (offset_of(args[2], &offset) < 0)
        return NULL;
    Bytes b = {NULL, 0, 0};
    if (one_line(&b, args[0], args[1], offset) < 0) {
        bytes_free(&b);
        return NULL;
    }
    return bytes_done(&b);
}

/* json_lines(pending, offset) -> bytes: the lines of a list of (ex, logger), in one buffer */
static PyObject *json_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    double offset;
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "json_lines(pending: list, offset)");
        return NULL;
    }
    if (offset_of(args[1], &offset) < 0)
        return NULL;
    PyObject *pending = args[0], *ex, *logger;
    Bytes b = {NULL, 0, 0};
    Py_ssize_t n = PyList_GET_SIZE(pending);
    if (bytes_room(&b, 512 * n + 2048) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pair(pending, i, &ex, &logger) < 0 || one_line(&b, ex, logger, offset) < 0) {
            bytes_free(&b);
            return NULL;
        }
    }
    return bytes_done(&b);
}

/* record(ex, logger, offset, observed_ns) -> (line, entry): the JSON line (newline included)
   and the OTLP LogRecord of the same request (one_record) */
static PyObject *record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    double offset;
    uint64_t observed;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "record(ex, logger, offset, observed_ns)");
        return NULL;
    }
    if (offset_of(args[2], &offset) < 0 || observed_of(args[3], &observed) < 0)
        return NULL;
    Bytes b = {NULL, 0, 0}, r = {NULL, 0, 0};
    PyObject *out = NULL;
    if (one_record(&b, &r, args[0], args[1], offset, observed) == 0) {
        PyObject *line = bytes_done(&b), *entry = line ? bytes_done(&r) : NULL;
        if (entry != NULL)
            out = PyTuple_Pack(2, line, entry);
        Py_XDECREF(line);
        Py_XDECREF(entry);
    }
    bytes_free(&b);
    bytes_free(&r);
    return out;
}

/* records(pending, offset, observed_ns) -> (lines, entries): record() of each (ex, logger) of
   a list, the lines in one buffer and the entries in another */
static PyObject *records(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    double offset;
    uint64_t observed;
    if (nargs != 3 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "records(pending: list, offset, observed_ns)");
        return NULL;
    }
    if (offset_of(args[1], &offset) < 0 || observed_of(args[2], &observed) < 0)
        return NULL;
    PyObject *pending = args[0], *ex, *logger, *out = NULL;
    Bytes b = {NULL, 0, 0}, r = {NULL, 0, 0};
    Py_ssize_t n = PyList_GET_SIZE(pending);
    if (bytes_room(&b, 512 * n + 2048) < 0 || bytes_room(&r, 1280 * n + 4096) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pair(pending, i, &ex, &logger) < 0 ||
            one_record(&b, &r, ex, logger, offset, observed) < 0)
            goto done;
    }
    PyObject *lines = bytes_done(&b), *entries = lines ? bytes_done(&r) : NULL;
    if (entries != NULL)
        out = PyTuple_Pack(2, lines, entries);
    Py_XDECREF(lines);
    Py_XDECREF(entries);
done:
    bytes_free(&b);
    bytes_free(&r);
    return out;
}

/* fields(down) -> bytes: a connection's part of the line (ClientHost, ClientPort,
   RequestScheme, the TLS fields), kept on it as ``log_fields`` when it has that attribute:
   for an observer that is not a Logger, at the end of a request while the connection is
   open */
static PyObject *fields(PyObject *module, PyObject *down) {
    Held h = {.n = 0};
    Part part;
    int rc = part_of(&h, down, A_LOG_FIELDS, make_fields, down, &part);
    release(&h);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- Logger: a router's access-log observer, compiled ---------------------------------------
 *
 * What accesslog.AccessLogger does, without a Python frame at each end: start() asks the
 * exchange to note when its backend attempt starts (OriginDuration), finish() makes the
 * connection's part of the line while it is open (once per connection) and queues
 * (exchange, logger) on the writer's pending list, which the writer formats 32 at a time
 * (Writer.format).  Used where the writer has no filter; its entrypoint, router, service and
 * writer are read as AccessLogger's are, and its names' part is made once. */

typedef struct {
    PyObject_HEAD
    PyObject *writer;
    PyObject *entrypoint;
    PyObject *router;
    PyObject *service;
    PyObject *pending; /* the writer's list, the same object for its life */
    PyObject *log_names; /* the names' part of the line */
    Py_ssize_t batch;
} Logger;

static PyObject *one; /* the int 1: ex.timed */

static int Logger_init(Logger *self, PyObject *args, PyObject *kwds) {
    PyObject *writer, *entrypoint, *router, *service, *pending;
    Py_ssize_t batch;
    if (!PyArg_ParseTuple(args, "OUUUO!n", &writer, &entrypoint, &router, &service,
                          &PyList_Type, &pending, &batch))
        return -1;
    if (batch < 1) {
        PyErr_SetString(PyExc_ValueError, "Logger: batch must be at least 1");
        return -1;
    }
    Py_XSETREF(self->writer, Py_NewRef(writer));
    Py_XSETREF(self->entrypoint, Py_NewRef(entrypoint));
    Py_XSETREF(self->router, Py_NewRef(router));
    Py_XSETREF(self->service, Py_NewRef(service));
    Py_XSETREF(self->pending, Py_NewRef(pending));
    self->batch = batch;
    Held h = {.n = 0};
    PyObject *part = make_names(&h, (PyObject *)self);
    release(&h);
    if (part == NULL)
        return -1;
    Py_XSETREF(self->log_names, part);
    return 0;
}

static int Logger_traverse(Logger *self, visitproc visit, void *arg) {
    Py_VISIT(self->writer);
    Py_VISIT(self->pending);
    return 0;
}

static int Logger_clear(Logger *self) {
    Py_CLEAR(self->writer);
    Py_CLEAR(self->entrypoint);
    Py_CLEAR(self->router);
    Py_CLEAR(self->service);
    Py_CLEAR(self->pending);
    Py_CLEAR(self->log_names);
    return 0;
}

static void Logger_dealloc(Logger *self) {
    PyObject_GC_UnTrack(self);
    Logger_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* start(ex): ex.timed = 1, the exchange notes when its backend attempt starts */
static PyObject *Logger_start(Logger *self, PyObject *ex) {
    if (slot_set(&slots[A_TIMED], ex, names[A_TIMED], one) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* finish(ex): make the connection's part while it is open (once: it is kept on it), queue
   (ex, self), and have the writer format a full batch */
static PyObject *Logger_finish(Logger *self, PyObject *ex) {
    Held h = {.n = 0};
    Part part;
    PyObject *down = peek(&h, ex, A_DOWN);
    if (down == NULL || part_of(&h, down, A_LOG_FIELDS, make_fields, down, &part) < 0)
        PyErr_Clear(); /* made again, or the error told, when the line is */
    release(&h);
    PyObject *pair = PyTuple_Pack(2, ex, (PyObject *)self);
    if (pair == NULL)
        return NULL;
    int rc = PyList_Append(self->pending, pair);
    Py_DECREF(pair);
    if (rc < 0)
        return NULL;
    if (PyList_GET_SIZE(self->pending) >= self->batch) {
        PyObject *r = PyObject_CallMethodNoArgs(self->writer, names[A_FORMAT]);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyMethodDef Logger_methods[] = {
    {"start", (PyCFunction)Logger_start, METH_O, "The exchange notes its backend attempt's start."},
    {"finish", (PyCFunction)Logger_finish, METH_O, "Queue the ended exchange for its line."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Logger_members[] = {
    {"writer", T_OBJECT_EX, offsetof(Logger, writer), READONLY, NULL},
    {"entrypoint", T_OBJECT_EX, offsetof(Logger, entrypoint), READONLY, NULL},
    {"router", T_OBJECT_EX, offsetof(Logger, router), READONLY, NULL},
    {"service", T_OBJECT_EX, offsetof(Logger, service), READONLY, NULL},
    {"log_names", T_OBJECT_EX, offsetof(Logger, log_names), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject LoggerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwire.telemetry._accesslog.Logger",
    .tp_basicsize = sizeof(Logger),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Logger(writer, entrypoint, router, service, pending, batch): a router's "
              "access-log observer (accesslog.AccessLogger, compiled).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Logger_init,
    .tp_traverse = (traverseproc)Logger_traverse,
    .tp_clear = (inquiry)Logger_clear,
    .tp_dealloc = (destructor)Logger_dealloc,
    .tp_methods = Logger_methods,
    .tp_members = Logger_members,
};

static PyMethodDef methods[] = {
    {"json_line", (PyCFunction)(void (*)(void))json_line, METH_FASTCALL,
     "json_line(ex, logger, offset): the default JSON access-log line of an ended exchange."},
    {"json_lines", (PyCFunction)(void (*)(void))json_lines, METH_FASTCALL,
     "json_lines(pending, offset): json_line of each (ex, logger) of a list, joined."},
    {"records", (PyCFunction)(void (*)(void))records, METH_FASTCALL,
     "records(pending, offset, observed_ns): (the lines, the LogRecord entries) of a list."},
    {"record", (PyCFunction)(void (*)(void))record, METH_FASTCALL,
     "record(ex, logger, offset, observed_ns): (the JSON line, its OTLP LogRecord entry)."},
    {"fields", (PyCFunction)fields, METH_O,
     "fields(down): make the connection's part of the line and keep it on the connection."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hopwire.telemetry._accesslog",
    "The access log's default JSON line in C (see hopwire.telemetry.accesslog).", -1, methods,
};

PyMODINIT_FUNC PyInit__accesslog(void) {
    for (int i = 0; i < A_COUNT; i++) {
        if (names[i] == NULL && (names[i] = PyUnicode_InternFromString(NAMES[i])) == NULL)
            return NULL;
    }
    for (int c = 0; c < 0x20; c++)
        ESCAPED[c] = 1;
    ESCAPED['"'] = ESCAPED['\\'] = 1;
    if (one == NULL && (one = PyLong_FromLong(1)) == NULL)
        return NULL;
    if (PyType_Ready(&LoggerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Logger", (PyObject *)&LoggerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
