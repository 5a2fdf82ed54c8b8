/* The access log's JSON line, written in C from the ended exchange: what
 * hopwire.telemetry.accesslog.Writer.doc and orjson.dumps make for the default fields (every
 * field kept, no request header), the same document (tests/unit/test_accesslog_line.py
 * compares them on random exchanges).  The Python path stays the reference and serves every
 * other setting (fields dropped, headers kept, the common format, OTLP).
 *
 * Measured, the Python path costs ~3 us a line where it runs (reading the exchange's fields,
 * a 21-key dict, orjson); this one reads the same attributes and writes the bytes directly.
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

static inline int raw(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0)
        return -1;
    put_raw(b, s, n);
    return 0;
}

#define LIT(b, s) raw(b, s, (Py_ssize_t)(sizeof(s) - 1))

/* decimal digits of v, without printf (a tenth of its instructions) */
static const char PAIRS[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                            "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                            "8081828384858687888990919293949596979899";

/* the number of decimal digits of u */
static inline int digits(unsigned long long u) {
    int n = 1;
    while (u >= 10000) {
        u /= 10000;
        n += 4;
    }
    return n + (u >= 10) + (u >= 100) + (u >= 1000);
}

/* decimal digits of v, written in place (no copy: the length is known first) */
static int integer(Buf *b, long long v) {
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    int n = digits(u) + (v < 0);
    if (buf_reserve(b, n) < 0)
        return -1;
    char *start = b->data + b->len, *o = start + n;
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
    if (v < 0)
        *--o = '-';
    b->len += n;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* whether any of eight bytes is a control character, '"' or '\\' (a zero byte after the
   subtraction or the XOR sets that byte's high bit; bytes of 0x80 and above never match) */
static inline int needs_escape(uint64_t x) {
    uint64_t control = (x - 0x20 * ONES) & ~x;
    uint64_t quote = x ^ ('"' * ONES), backslash = x ^ ('\\' * ONES);
    return ((control | ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash)) & HIGHS) != 0;
}

/* a JSON string of UTF-8 bytes: quotes, backslashes and control characters escaped as
   orjson escapes them */
static int utf8_string(Buf *b, const unsigned char *s, Py_ssize_t n) {
    if (buf_reserve(b, 2 + 6 * n) < 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    /* the leading run that needs no escape, eight bytes at a time, copied as it is */
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        if (needs_escape(x))
            break;
        memcpy(o, s + i, 8);
        o += 8;
    }
    for (; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            *o++ = '\\';
            switch (c) {
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
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    b->len = o - b->data;
    return 0;
}





/* interned attribute names */
enum {
    A_T0, A_T1, A_ATTEMPTS, A_SERVER, A_URL, A_ORIGIN_STATUS, A_ORIGIN_DURATION, A_DOWN,
    A_TRACE, A_SAMPLED, A_TID, A_SPAN_RAW, A_CLIENT_IP, A_CLIENT_PORT, A_METHOD, A_PATH_QUERY,
    A_HTTP10, A_HOST, A_REQ_BYTES, A_STATUS, A_RESP_BYTES, A_EP, A_SCHEME_STR, A_TLS,
    A_TLS_FIELDS, A_ENTRYPOINT, A_ROUTER, A_SERVICE, A_TIMED, A_FORMAT, A_VERSION, A_COUNT
};
static const char *NAMES[A_COUNT] = {
    "t0", "t1", "attempts", "server", "url", "origin_status", "origin_duration", "down",
    "trace", "sampled", "tid", "span_raw", "client_ip", "client_port", "method", "path_query",
    "http10", "host", "req_bytes", "status", "resp_bytes", "ep", "scheme_str", "tls",
    "tls_fields", "entrypoint", "router", "service", "timed", "format", "version",
};
static PyObject *names[A_COUNT];

/* the attributes read, released together */
typedef struct {
    PyObject *held[40];
    int n;
} Held;

static SlotCache slots[A_COUNT]; /* where each name is found (_cbuf.h) */

static PyObject *get(Held *h, PyObject *o, int name) {
    PyObject *v = slot_get(&slots[name], o, names[name]);
    if (v != NULL)
        h->held[h->n++] = v;
    return v;
}

static void release(Held *h) {
    for (int i = 0; i < h->n; i++)
        Py_DECREF(h->held[i]);
    h->n = 0;
}

/* A field's name: as the line writes it after the previous field (,"Name":) and as an
   attribute's key */
#define KEY_ROOM 32
typedef struct {
    char json[KEY_ROOM]; /* copied whole (a fixed size is two moves, not a call) */
    Py_ssize_t jlen;
    const char *name;
    Py_ssize_t nlen;
} Key;

#define KEY(n) (&(const Key){",\"" n "\":", sizeof(",\"" n "\":") - 1, n, sizeof(n) - 1})
_Static_assert(sizeof(",\"DownstreamContentSize\":") <= KEY_ROOM, "the longest key fits");

/* ---- protobuf: a LogRecord's attributes (otlp.log_record's layout) ----------------------- */

/* The head of a KeyValue entry (tag 6 of LogRecord) whose AnyValue body is ``alen`` bytes:
   the entry's tag and length, the key, the value's tag and length.  Reserves room for the
   body, which the caller writes next. */
static int pb_head(Buf *p, const char *key, Py_ssize_t klen, Py_ssize_t alen) {
    Py_ssize_t inner = 1 + vsize(klen) + klen + 1 + vsize(alen) + alen;
    if (buf_reserve(p, 1 + 10 + inner) < 0)
        return -1;
    p->data[p->len++] = 0x32;
    put_varint(p, inner);
    p->data[p->len++] = 0x0a;
    put_varint(p, klen);
    memcpy(p->data + p->len, key, klen);
    p->len += klen;
    p->data[p->len++] = 0x12;
    put_varint(p, alen);
    return 0;
}

/* KeyValue of a string value */
static int pb_str(Buf *p, const Key *k, const char *v, Py_ssize_t n) {
    if (pb_head(p, k->name, k->nlen, 1 + vsize(n) + n) < 0)
        return -1;
    p->data[p->len++] = 0x0a;
    put_varint(p, n);
    memcpy(p->data + p->len, v, n);
    p->len += n;
    return 0;
}

/* KeyValue of an int value */
static int pb_int(Buf *p, const Key *k, long long v) {
    if (pb_head(p, k->name, k->nlen, 1 + vsize((uint64_t)v)) < 0)
        return -1;
    p->data[p->len++] = 0x18;
    put_varint(p, (uint64_t)v);
    return 0;
}

/* ---- one field, to the JSON line and (when asked) to the attributes ------------------------ */

typedef struct {
    Buf *json;
    Buf *attrs; /* NULL: the line only */
    int fields;
} Out;

static inline int key_of(Out *o, const Key *k) {
    if (buf_reserve(o->json, KEY_ROOM) < 0)
        return -1;
    char *at = o->json->data + o->json->len;
    memcpy(at, k->json, KEY_ROOM);
    if (!o->fields++)
        at[0] = '{'; /* the first: {"Name": */
    o->json->len += k->jlen;
    return 0;
}

static int f_utf8(Out *o, const Key *k, const char *v, Py_ssize_t n) {
    if (key_of(o, k) < 0 || utf8_string(o->json, (const unsigned char *)v, n) < 0)
        return -1;
    return o->attrs ? pb_str(o->attrs, k, v, n) : 0;
}

static int f_str(Out *o, const Key *k, PyObject *s) {
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "access log: expected str");
        return -1;
    }
    if (PyUnicode_IS_COMPACT_ASCII(s)) /* its bytes are its UTF-8: no lookup of the cache */
        return f_utf8(o, k, (const char *)PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s));
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL)
        return -1;
    return f_utf8(o, k, p, n);
}

static int f_int(Out *o, const Key *k, long long v) {
    if (key_of(o, k) < 0 || integer(o->json, v) < 0)
        return -1;
    return o->attrs ? pb_int(o->attrs, k, v) : 0;
}

static int f_int_of(Out *o, const Key *k, PyObject *v) {
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred())
        return -1;
    return f_int(o, k, n);
}

static int f_null(Out *o, const Key *k) { /* the JSON null; no attribute (None is left out) */
    if (key_of(o, k) < 0)
        return -1;
    return LIT(o->json, "null");
}

/* bytes read as latin-1 (the request target as received) */
static int f_latin1(Out *o, const Key *k, PyObject *v) {
    if (!PyBytes_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "access log: expected bytes");
        return -1;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(v);
    Py_ssize_t n = PyBytes_GET_SIZE(v), m = 0;
    int high = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        high |= s[i] & 0x80;
    if (!high)
        return f_utf8(o, k, (const char *)s, n);
    /* each byte of 0x80-0xFF is a code point of two UTF-8 bytes */
    char *tmp = PyMem_Malloc(2 * n + 1);
    if (tmp == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < 0x80) {
            tmp[m++] = (char)s[i];
        } else {
            tmp[m++] = (char)(0xC0 | (s[i] >> 6));
            tmp[m++] = (char)(0x80 | (s[i] & 0x3F));
        }
    }
    int rc = f_utf8(o, k, tmp, m);
    PyMem_Free(tmp);
    return rc;
}

static int f_hex(Out *o, const Key *k, PyObject *v, Py_ssize_t want) {
    if (!PyBytes_Check(v) || PyBytes_GET_SIZE(v) != want) {
        PyErr_SetString(PyExc_ValueError, "access log: an id of the wrong size");
        return -1;
    }
    char hex[32];
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(v);
    for (Py_ssize_t i = 0; i < want; i++) {
        hex[2 * i] = HEX[s[i] >> 4];
        hex[2 * i + 1] = HEX[s[i] & 15];
    }
    return f_utf8(o, k, hex, 2 * want);
}

/* StartUTC: 2026-12-07T07:46:22.123456Z, the date part made once a second */
static long long cached_second = -1;
static char cached_prefix[32];

static int f_start(Out *o, double wall) {
    double whole = floor(wall);
    long long second = (long long)whole;
    if (second != cached_second) {
        time_t t = (time_t)second;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL) {
            PyErr_SetString(PyExc_ValueError, "access log: start time out of range");
            return -1;
        }
        strftime(cached_prefix, sizeof cached_prefix, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_second = second;
    }
    char tmp[48];
    size_t n = strlen(cached_prefix);
    memcpy(tmp, cached_prefix, n);
    int micro = (int)((wall - whole) * 1e6);
    tmp[n++] = '.';
    for (int d = 5; d >= 0; d--) {
        tmp[n + d] = (char)('0' + micro % 10);
        micro /= 10;
    }
    n += 6;
    tmp[n++] = 'Z';
    return f_utf8(o, KEY("StartUTC"), tmp, (Py_ssize_t)n);
}

#define GET(var, obj, name)                                                                     \
    PyObject *var = get(h, obj, name);                                                          \
    if (var == NULL)                                                                            \
    return -1

#define PUT(call)                                                                               \
    if ((call) < 0)                                                                             \
    return -1

/* Every field of an ended exchange, in Writer.doc's order; *trace_out: the sampled trace
   (borrowed from ``h``) or NULL; *start_out: the wall-clock start. */
static int fields(Out *o, Held *h, PyObject *ex, PyObject *logger, double offset,
                  PyObject **trace_out, double *start_out) {
    GET(t0, ex, A_T0);
    GET(t1, ex, A_T1);
    double start = PyFloat_AsDouble(t0), end = PyFloat_AsDouble(t1);
    if (PyErr_Occurred())
        return -1;
    *start_out = start + offset;
    long long nanos = (long long)((end - start) * 1e9);
    GET(attempts_o, ex, A_ATTEMPTS);
    long attempts = PyLong_AsLong(attempts_o);
    if (attempts == -1 && PyErr_Occurred())
        return -1;
    GET(down, ex, A_DOWN);
    GET(ep, down, A_EP);
    PUT(f_start(o, start + offset));
    PUT(f_int(o, KEY("Duration"), nanos));
    GET(entrypoint, logger, A_ENTRYPOINT);
    PUT(f_str(o, KEY("entryPointName"), entrypoint));
    GET(router, logger, A_ROUTER);
    PUT(PyObject_IsTrue(router) ? f_str(o, KEY("RouterName"), router) : f_null(o, KEY("RouterName")));
    GET(service, logger, A_SERVICE);
    PUT(PyObject_IsTrue(service) ? f_str(o, KEY("ServiceName"), service)
                                 : f_null(o, KEY("ServiceName")));
    long long origin = 0;
    PyObject *origin_status = NULL;
    if (attempts > 0) {
        GET(server, ex, A_SERVER);
        GET(url, server, A_URL);
        PUT(f_str(o, KEY("ServiceURL"), url));
        GET(os, ex, A_ORIGIN_STATUS);
        GET(od, ex, A_ORIGIN_DURATION);
        double spent = PyFloat_AsDouble(od);
        if (spent == -1.0 && PyErr_Occurred())
            return -1;
        origin = (long long)(spent * 1e9);
        origin_status = os;
    } else {
        PUT(f_null(o, KEY("ServiceURL")));
    }
    GET(client_ip, down, A_CLIENT_IP);
    PUT(f_str(o, KEY("ClientHost"), client_ip));
    GET(client_port, down, A_CLIENT_PORT);
    PUT(f_int_of(o, KEY("ClientPort"), client_port));
    GET(method, ex, A_METHOD);
    PUT(f_str(o, KEY("RequestMethod"), method));
    GET(path_query, ex, A_PATH_QUERY);
    PUT(f_latin1(o, KEY("RequestPath"), path_query));
    GET(http10, ex, A_HTTP10);
    const char *protocol = "HTTP/1.0";
    if (!PyObject_IsTrue(http10)) { /* the connection's version: "2" for an HTTP/2 stream */
        GET(version, down, A_VERSION);
        protocol = PyUnicode_Check(version) && PyUnicode_GET_LENGTH(version) == 1 &&
                           PyUnicode_READ_CHAR(version, 0) == '2'
                       ? "HTTP/2.0"
                       : "HTTP/1.1";
    }
    PUT(f_utf8(o, KEY("RequestProtocol"), protocol, 8));
    GET(host, ex, A_HOST);
    PUT(f_str(o, KEY("RequestHost"), host));
    GET(req_bytes, ex, A_REQ_BYTES);
    PUT(f_int_of(o, KEY("RequestContentSize"), req_bytes));
    GET(status, ex, A_STATUS);
    PUT(f_int_of(o, KEY("DownstreamStatus"), status));
    GET(resp_bytes, ex, A_RESP_BYTES);
    PUT(f_int_of(o, KEY("DownstreamContentSize"), resp_bytes));
    if (origin_status != NULL) {
        PUT(f_int_of(o, KEY("OriginStatus"), origin_status));
        PUT(f_int(o, KEY("OriginDuration"), origin));
    } else {
        PUT(f_null(o, KEY("OriginStatus")));
        PUT(f_null(o, KEY("OriginDuration")));
    }
    PUT(f_int(o, KEY("Overhead"), nanos - origin));
    PUT(f_int(o, KEY("RetryAttempts"), attempts > 1 ? attempts - 1 : 0));
    *trace_out = NULL;
    GET(trace, ex, A_TRACE);
    if (trace != Py_None) {
        GET(sampled, trace, A_SAMPLED);
        if (PyObject_IsTrue(sampled)) {
            GET(tid, trace, A_TID);
            GET(span, trace, A_SPAN_RAW);
            PUT(f_hex(o, KEY("trace_id"), tid, 16));
            PUT(f_hex(o, KEY("span_id"), span, 8));
            *trace_out = trace;
        }
    }
    GET(scheme, ep, A_SCHEME_STR);
    PUT(f_str(o, KEY("RequestScheme"), scheme));
    GET(ep_tls, ep, A_TLS);
    if (PyObject_IsTrue(ep_tls)) {
        PyObject *tls = PyObject_CallMethodNoArgs(down, names[A_TLS_FIELDS]);
        if (tls == NULL)
            return -1;
        h->held[h->n++] = tls;
        if (tls != Py_None) {
            if (!PyTuple_Check(tls) || PyTuple_GET_SIZE(tls) != 3) {
                PyErr_SetString(PyExc_TypeError, "access log: TLS fields are a 3-tuple");
                return -1;
            }
            PUT(f_str(o, KEY("TLSVersion"), PyTuple_GET_ITEM(tls, 0)));
            PUT(f_str(o, KEY("TLSCipher"), PyTuple_GET_ITEM(tls, 1)));
            if (PyTuple_GET_ITEM(tls, 2) != Py_None)
                PUT(f_str(o, KEY("TLSClientSubject"), PyTuple_GET_ITEM(tls, 2)));
        }
    }
    return 0;
}

/* One exchange's line, newline included, appended to ``b`` */
static int one_line(Buf *b, PyObject *ex, PyObject *logger, double offset) {
    Held h = {.n = 0};
    Out o = {b, NULL, 0};
    PyObject *trace;
    double start;
    int rc = fields(&o, &h, ex, logger, offset, &trace, &start);
    release(&h);
    return rc < 0 ? -1 : LIT(b, "}\n");
}

/* One exchange's line (newline included) appended to ``b`` and its LogRecord, as a
   ScopeLogs.log_records entry, to ``r``; ``a`` holds the attributes meanwhile.  The record is
   what otlp.log_record makes of the line (body), Writer.doc (attributes, None left out),
   severity 9 INFO, the start as time, and a sampled request's trace and SERVER span ids. */
static int one_record(Buf *b, Buf *a, Buf *r, PyObject *ex, PyObject *logger, double offset,
                      uint64_t observed) {
    Held h = {.n = 0};
    Out o = {b, a, 0};
    PyObject *trace;
    double start;
    int rc = -1;
    Py_ssize_t line = b->len;
    a->len = 0;
    if (fields(&o, &h, ex, logger, offset, &trace, &start) < 0 || LIT(b, "}") < 0)
        goto done;
    const char *tid = NULL, *sid = NULL;
    if (trace != NULL) {
        PyObject *t = get(&h, trace, A_TID), *s = get(&h, trace, A_SPAN_RAW);
        if (t == NULL || s == NULL)
            goto done;
        tid = PyBytes_AS_STRING(t); /* checked by f_hex */
        sid = PyBytes_AS_STRING(s);
    }
    Py_ssize_t n = b->len - line;
    Py_ssize_t body = 1 + vsize(n) + n;
    Py_ssize_t size = 9 + 9 + 2 + 6 + (1 + vsize(body) + body) + a->len + (tid ? 5 + 18 + 10 : 0);
    if (buf_reserve(r, 1 + 10 + size) < 0)
        goto done;
    uint64_t when = (uint64_t)(start * 1e9);
    r->data[r->len++] = 0x12; /* ScopeLogs.log_records */
    put_varint(r, size);
    Py_ssize_t at = r->len;
    r->data[r->len++] = 0x09; /* time_unix_nano, fixed64 */
    for (int i = 0; i < 8; i++)
        r->data[r->len++] = (char)((when >> (8 * i)) & 0xFF);
    r->data[r->len++] = 0x59; /* observed_time_unix_nano */
    for (int i = 0; i < 8; i++)
        r->data[r->len++] = (char)((observed >> (8 * i)) & 0xFF);
    r->data[r->len++] = 0x10; /* severity_number: INFO */
    r->data[r->len++] = 9;
    memcpy(r->data + r->len, "\x1a\x04INFO", 6); /* severity_text */
    r->len += 6;
    r->data[r->len++] = 0x2a; /* body: AnyValue{string_value} */
    put_varint(r, body);
    r->data[r->len++] = 0x0a;
    put_varint(r, n);
    memcpy(r->data + r->len, b->data + line, n);
    r->len += n;
    memcpy(r->data + r->len, a->data, a->len);
    r->len += a->len;
    if (tid != NULL) {
        memcpy(r->data + r->len, "\x45\x01\x00\x00\x00\x4a\x10", 7); /* flags: sampled; trace_id */
        r->len += 7;
        memcpy(r->data + r->len, tid, 16);
        r->len += 16;
        memcpy(r->data + r->len, "\x52\x08", 2); /* span_id */
        r->len += 2;
        memcpy(r->data + r->len, sid, 8);
        r->len += 8;
    }
    if (r->len - at != size) {
        PyErr_SetString(PyExc_SystemError, "access log: LogRecord size mismatch");
        goto done;
    }
    rc = LIT(b, "\n");
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

/* json_line(ex, logger, offset) -> bytes: the line of an ended exchange, newline included */
static PyObject *json_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    double offset;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "json_line(ex, logger, offset)");
        return NULL;
    }
    if (offset_of(args[2], &offset) < 0)
        return NULL;
    Buf b = {NULL, 0, 0};
    PyObject *out = NULL;
    if (one_line(&b, args[0], args[1], offset) == 0)
        out = PyBytes_FromStringAndSize(b.data, b.len);
    PyMem_Free(b.data);
    return out;
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
    PyObject *pending = args[0], *ex, *logger, *out = NULL;
    Buf b = {NULL, 0, 0};
    Py_ssize_t n = PyList_GET_SIZE(pending);
    if (buf_reserve(&b, 512 * n + 1) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pair(pending, i, &ex, &logger) < 0 || one_line(&b, ex, logger, offset) < 0)
            goto done;
    }
    out = PyBytes_FromStringAndSize(b.data, b.len);
done:
    PyMem_Free(b.data);
    return out;
}

static int observed_of(PyObject *arg, uint64_t *observed) {
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *observed = v;
    return 0;
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
    Buf b = {NULL, 0, 0}, a = {NULL, 0, 0}, r = {NULL, 0, 0};
    PyObject *out = NULL;
    if (one_record(&b, &a, &r, args[0], args[1], offset, observed) == 0)
        out = Py_BuildValue("(y#y#)", b.data, b.len, r.data, r.len);
    PyMem_Free(b.data);
    PyMem_Free(a.data);
    PyMem_Free(r.data);
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
    Buf b = {NULL, 0, 0}, a = {NULL, 0, 0}, r = {NULL, 0, 0};
    Py_ssize_t n = PyList_GET_SIZE(pending);
    if (buf_reserve(&b, 512 * n + 1) < 0 || buf_reserve(&r, 1280 * n + 1) < 0 || buf_reserve(&a, 1024) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pair(pending, i, &ex, &logger) < 0 ||
            one_record(&b, &a, &r, ex, logger, offset, observed) < 0)
            goto done;
    }
    out = Py_BuildValue("(y#y#)", b.data, b.len, r.data, r.len);
done:
    PyMem_Free(b.data);
    PyMem_Free(a.data);
    PyMem_Free(r.data);
    return out;
}

/* ---- Logger: a router's access-log observer, compiled ---------------------------------------
 *
 * What accesslog.AccessLogger does, without a Python frame at each end: start() asks the
 * exchange to time its backend attempt (OriginDuration), finish() reads a TLS connection's
 * fields while it is open and queues (exchange, logger) on the writer's pending list, which
 * the writer formats 32 at a time (Writer.format).  Used where the writer has no filter; its
 * entrypoint, router, service and writer are read by the formatting as AccessLogger's are. */

typedef struct {
    PyObject_HEAD
    PyObject *writer;
    PyObject *entrypoint;
    PyObject *router;
    PyObject *service;
    PyObject *pending; /* the writer's list, the same object for its life */
    Py_ssize_t batch;
} Logger;

static PyObject *two; /* the int 2: ex.timed */

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
    return 0;
}

static void Logger_dealloc(Logger *self) {
    PyObject_GC_UnTrack(self);
    Logger_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* start(ex): ex.timed = 2, the exchange times its backend attempt for OriginDuration */
static PyObject *Logger_start(Logger *self, PyObject *ex) {
    if (PyObject_SetAttr(ex, names[A_TIMED], two) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* finish(ex): read a TLS connection's fields while it is open, queue (ex, self), and have
   the writer format a full batch */
static PyObject *Logger_finish(Logger *self, PyObject *ex) {
    Held h = {.n = 0};
    PyObject *out = NULL;
    PyObject *down = get(&h, ex, A_DOWN);
    PyObject *ep = down ? get(&h, down, A_EP) : NULL;
    PyObject *tls = ep ? get(&h, ep, A_TLS) : NULL;
    if (tls == NULL)
        goto done;
    int on = PyObject_IsTrue(tls);
    if (on < 0)
        goto done;
    if (on) {
        PyObject *fields = PyObject_CallMethodNoArgs(down, names[A_TLS_FIELDS]);
        if (fields == NULL)
            goto done;
        Py_DECREF(fields);
    }
    PyObject *pair = PyTuple_Pack(2, ex, (PyObject *)self);
    if (pair == NULL)
        goto done;
    int rc = PyList_Append(self->pending, pair);
    Py_DECREF(pair);
    if (rc < 0)
        goto done;
    if (PyList_GET_SIZE(self->pending) >= self->batch) {
        PyObject *r = PyObject_CallMethodNoArgs(self->writer, names[A_FORMAT]);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    out = Py_NewRef(Py_None);
done:
    release(&h);
    return out;
}

static PyMethodDef Logger_methods[] = {
    {"start", (PyCFunction)Logger_start, METH_O, "The exchange times its backend attempt."},
    {"finish", (PyCFunction)Logger_finish, METH_O, "Queue the ended exchange for its line."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Logger_members[] = {
    {"writer", T_OBJECT_EX, offsetof(Logger, writer), READONLY, NULL},
    {"entrypoint", T_OBJECT_EX, offsetof(Logger, entrypoint), READONLY, NULL},
    {"router", T_OBJECT_EX, offsetof(Logger, router), READONLY, NULL},
    {"service", T_OBJECT_EX, offsetof(Logger, service), READONLY, NULL},
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
    if (two == NULL && (two = PyLong_FromLong(2)) == NULL)
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
