/* The compiled OTLP span encoder: the same bytes as hopwire.telemetry.otlp.Encoder.
 *
 * hopwire/telemetry/otlp.py is the reference and documents the layout; this file writes the
 * same fields in the same order, straight into one growing buffer, without the reference's
 * cache of repeated blocks (copying bytes is cheaper here than looking them up).  A property
 * test (tests/unit/test_encoder.py) proves the two byte-identical on random records.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_cbuf.h"
#include <stdint.h>
#include <string.h>

/* Buf, buf_reserve, vsize and the put_* writers: _cbuf.h; callers reserve first, every
   put_* writes within what was reserved */

static void put_fixed64(Buf *b, uint64_t v) {
    for (int i = 0; i < 8; i++)
        b->data[b->len++] = (char)((v >> (8 * i)) & 0xFF);
}

static void put_fixed32(Buf *b, uint32_t v) {
    for (int i = 0; i < 4; i++)
        b->data[b->len++] = (char)((v >> (8 * i)) & 0xFF);
}

/* tag, length, payload */
static int put_ld(Buf *b, int tag, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, 1 + 10 + n) < 0)
        return -1;
    put_byte(b, tag);
    put_varint(b, (uint64_t)n);
    put_raw(b, s, n);
    return 0;
}

/* UTF-8 of a str, as str.encode("utf-8", "replace"); *owner holds a new reference if made */
static const char *utf8_of(PyObject *s, Py_ssize_t *n, PyObject **owner) {
    *owner = NULL;
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "span record: expected str");
        return NULL;
    }
    const char *p = PyUnicode_AsUTF8AndSize(s, n);
    if (p != NULL)
        return p;
    PyErr_Clear();
    *owner = PyUnicode_AsEncodedString(s, "utf-8", "replace");
    if (*owner == NULL)
        return NULL;
    *n = PyBytes_GET_SIZE(*owner);
    return PyBytes_AS_STRING(*owner);
}

static int put_ld_str(Buf *b, int tag, PyObject *s) {
    Py_ssize_t n;
    PyObject *owner;
    const char *p = utf8_of(s, &n, &owner);
    if (p == NULL)
        return -1;
    int rc = put_ld(b, tag, p, n);
    Py_XDECREF(owner);
    return rc;
}

/* The head of a KeyValue entry of field ``tag`` (0x4a: Span.attributes, 0x32:
   LogRecord.attributes) whose AnyValue body is ``vlen`` bytes: the entry's tag and length, the
   key field, the value's tag and length.  Reserves room for the body too, which the caller
   writes next. */
static int put_entry_head(Buf *b, int tag, const char *key, Py_ssize_t klen, Py_ssize_t vlen) {
    Py_ssize_t inner = 1 + vsize(klen) + klen + 1 + vsize(vlen) + vlen;
    if (buf_reserve(b, 1 + 10 + inner) < 0)
        return -1;
    put_byte(b, tag);
    put_varint(b, (uint64_t)inner);
    put_byte(b, 0x0a);
    put_varint(b, (uint64_t)klen);
    put_raw(b, key, klen);
    put_byte(b, 0x12);
    put_varint(b, (uint64_t)vlen);
    return 0;
}

/* the head of a span attribute */
static int put_kv_head(Buf *b, const char *key, Py_ssize_t klen, Py_ssize_t vlen) {
    return put_entry_head(b, 0x4a, key, klen, vlen);
}

/* KeyValue{key, AnyValue} with ``value`` the AnyValue body */
static int put_kv(Buf *b, const char *key, Py_ssize_t klen, const char *value, Py_ssize_t vlen) {
    if (put_kv_head(b, key, klen, vlen) < 0)
        return -1;
    put_raw(b, value, vlen);
    return 0;
}

#define KEY(k) k, (Py_ssize_t)(sizeof(k) - 1)

/* up to 4 pieces of UTF-8 joined as one string, for a name or url.full */
typedef struct {
    const char *p[4];
    Py_ssize_t n[4];
    PyObject *owner[4];
    int count;
    Py_ssize_t total;
} Pieces;

static int pieces_add_str(Pieces *ps, PyObject *s) {
    int i = ps->count;
    const char *p = utf8_of(s, &ps->n[i], &ps->owner[i]);
    if (p == NULL)
        return -1;
    ps->p[i] = p;
    ps->total += ps->n[i];
    ps->count++;
    return 0;
}

static void pieces_add_raw(Pieces *ps, const char *p, Py_ssize_t n) {
    int i = ps->count;
    ps->p[i] = p;
    ps->n[i] = n;
    ps->owner[i] = NULL;
    ps->total += n;
    ps->count++;
}

static void pieces_clear(Pieces *ps) {
    for (int i = 0; i < ps->count; i++)
        Py_XDECREF(ps->owner[i]);
    ps->count = 0;
    ps->total = 0;
}

/* the pieces as a length-delimited field (a span name) */
static int put_ld_pieces(Buf *b, int tag, Pieces *ps) {
    if (buf_reserve(b, 1 + 10 + ps->total) < 0)
        return -1;
    put_byte(b, tag);
    put_varint(b, (uint64_t)ps->total);
    for (int i = 0; i < ps->count; i++)
        put_raw(b, ps->p[i], ps->n[i]);
    return 0;
}

/* the pieces as one string attribute (url.full), as kv_str_raw writes one string */
static int kv_str_pieces(Buf *b, const char *key, Py_ssize_t klen, Pieces *ps) {
    Py_ssize_t n = ps->total;
    if (put_kv_head(b, key, klen, 1 + vsize(n) + n) < 0)
        return -1;
    put_byte(b, 0x0a);
    put_varint(b, (uint64_t)n);
    for (int i = 0; i < ps->count; i++)
        put_raw(b, ps->p[i], ps->n[i]);
    return 0;
}

/* a string attribute: AnyValue{string_value} */
static int kv_str_raw(Buf *b, const char *key, Py_ssize_t klen, const char *s, Py_ssize_t n) {
    if (put_kv_head(b, key, klen, 1 + vsize(n) + n) < 0)
        return -1;
    put_byte(b, 0x0a);
    put_varint(b, (uint64_t)n);
    put_raw(b, s, n);
    return 0;
}

static int kv_str(Buf *b, const char *key, Py_ssize_t klen, PyObject *value) {
    Py_ssize_t n;
    PyObject *owner;
    const char *p = utf8_of(value, &n, &owner);
    if (p == NULL)
        return -1;
    int rc = kv_str_raw(b, key, klen, p, n);
    Py_XDECREF(owner);
    return rc;
}

static int as_u64(PyObject *o, uint64_t *out) {
    if (!PyLong_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "span record: expected int");
        return -1;
    }
    *out = (uint64_t)PyLong_AsUnsignedLongLongMask(o);
    if (*out == (uint64_t)-1 && PyErr_Occurred())
        return -1;
    return 0;
}

static int kv_int(Buf *b, const char *key, Py_ssize_t klen, PyObject *value) {
    uint64_t v;
    if (as_u64(value, &v) < 0)
        return -1;
    char any[11];
    Buf tmp = {any, 0, sizeof any};
    put_byte(&tmp, 0x18);
    put_varint(&tmp, v);
    return put_kv(b, key, klen, any, tmp.len);
}

/* http.{request,response}.header.<name>: an array of strings */
static int kv_strings(Buf *b, const char *prefix, Py_ssize_t plen, PyObject *item) {
    PyObject *pair = PySequence_Fast(item, "span record: expected (name, values)");
    if (pair == NULL)
        return -1;
    int rc = -1;
    Buf key = {NULL, 0, 0}, array = {NULL, 0, 0};
    PyObject *values = NULL;
    if (PySequence_Fast_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_ValueError, "span record: expected (name, values)");
        goto done;
    }
    Py_ssize_t n;
    PyObject *owner;
    const char *name = utf8_of(PySequence_Fast_GET_ITEM(pair, 0), &n, &owner);
    if (name == NULL)
        goto done;
    if (buf_reserve(&key, plen + n) < 0) {
        Py_XDECREF(owner);
        goto done;
    }
    put_raw(&key, prefix, plen);
    put_raw(&key, name, n);
    Py_XDECREF(owner);
    values = PySequence_Fast(PySequence_Fast_GET_ITEM(pair, 1), "span record: expected values");
    if (values == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(values); i++) {
        Py_ssize_t vn;
        const char *v = utf8_of(PySequence_Fast_GET_ITEM(values, i), &vn, &owner);
        if (v == NULL)
            goto done;
        /* ArrayValue.values entry: 0x0a len AnyValue{0x0a len str} */
        Py_ssize_t any = 1 + vsize(vn) + vn;
        if (buf_reserve(&array, 2 + 20 + vn) < 0) {
            Py_XDECREF(owner);
            goto done;
        }
        put_byte(&array, 0x0a);
        put_varint(&array, (uint64_t)any);
        put_byte(&array, 0x0a);
        put_varint(&array, (uint64_t)vn);
        put_raw(&array, v, vn);
        Py_XDECREF(owner);
    }
    {
        /* AnyValue{array_value (field 5)} */
        Buf any = {NULL, 0, 0};
        if (buf_reserve(&any, 1 + 10 + array.len) < 0)
            goto done;
        put_byte(&any, 0x2a);
        put_varint(&any, (uint64_t)array.len);
        if (array.len)
            put_raw(&any, array.data, array.len);
        rc = put_kv(b, key.data, key.len, any.data, any.len);
        PyMem_Free(any.data);
    }
done:
    PyMem_Free(key.data);
    PyMem_Free(array.data);
    Py_XDECREF(values);
    Py_DECREF(pair);
    return rc;
}

static int bytes_of(PyObject *o, const char **p, Py_ssize_t *n) {
    if (!PyBytes_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "span record: expected bytes");
        return -1;
    }
    *p = PyBytes_AS_STRING(o);
    *n = PyBytes_GET_SIZE(o);
    return 0;
}

/* trace_id, span_id, [trace_state], [parent_span_id], start, end */
static int put_head(Buf *b, const char *tid, const char *span, const char *state, Py_ssize_t slen,
                    const char *parent, Py_ssize_t plen, uint64_t start, uint64_t end) {
    if (buf_reserve(b, 2 + 16 + 2 + 8 + 11 + slen + 2 + 8 + 18) < 0)
        return -1;
    put_byte(b, 0x0a);
    put_byte(b, 0x10);
    put_raw(b, tid, 16);
    put_byte(b, 0x12);
    put_byte(b, 0x08);
    put_raw(b, span, 8);
    if (slen) {
        put_byte(b, 0x1a);
        put_varint(b, (uint64_t)slen);
        put_raw(b, state, slen);
    }
    if (plen) {
        put_byte(b, 0x22);
        put_byte(b, 0x08);
        put_raw(b, parent, 8);
    }
    put_byte(b, 0x39);
    put_fixed64(b, start);
    put_byte(b, 0x41);
    put_fixed64(b, end);
    return 0;
}

static const char STATUS_ERROR[] = "\x7a\x02\x18\x02";

/* one ScopeSpans.spans entry from what was written at body_start onwards */
static PyObject *finish_span(Buf *b, Py_ssize_t body_start) {
    Py_ssize_t n = b->len - body_start;
    int vs = vsize((uint64_t)n);
    PyObject *out = PyBytes_FromStringAndSize(NULL, 1 + vs + n);
    if (out == NULL)
        return NULL;
    char *p = PyBytes_AS_STRING(out);
    Buf head = {p, 0, 1 + vs};
    put_byte(&head, 0x12);
    put_varint(&head, (uint64_t)n);
    memcpy(p + head.len, b->data + body_start, n);
    b->len = body_start;
    return out;
}

typedef struct {
    PyObject_HEAD
    PyObject *redact; /* str -> str: the query as spans show it */
    Buf buf;          /* the span being written */
    Buf batch;        /* the spans added since the last take, as ScopeSpans.spans entries */
    Py_ssize_t pending;
} Encoder;

/* the span written in self->buf goes to ``list`` (a new bytes) or, without one, the batch */
static int emit(Encoder *self, PyObject *list) {
    Buf *b = &self->buf;
    if (list != NULL) {
        PyObject *span = finish_span(b, 0);
        if (span == NULL)
            return -1;
        int rc = PyList_Append(list, span);
        Py_DECREF(span);
        return rc;
    }
    Buf *out = &self->batch;
    if (buf_reserve(out, 1 + 10 + b->len) < 0)
        return -1;
    put_byte(out, 0x12);
    put_varint(out, (uint64_t)b->len);
    put_raw(out, b->data, b->len);
    b->len = 0;
    return 0;
}

static int Encoder_init(Encoder *self, PyObject *args, PyObject *kwds) {
    PyObject *redact;
    if (!PyArg_ParseTuple(args, "O", &redact))
        return -1;
    if (!PyCallable_Check(redact)) {
        PyErr_SetString(PyExc_TypeError, "Encoder(redact): redact must be callable");
        return -1;
    }
    Py_INCREF(redact);
    Py_XSETREF(self->redact, redact);
    return 0;
}

static void Encoder_dealloc(Encoder *self) {
    Py_XDECREF(self->redact);
    PyMem_Free(self->buf.data);
    PyMem_Free(self->batch.data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define RECORD_FIELDS 25

/* one Span.links entry (field 13) of a (trace id, span id, flags, trace state) tuple */
static int put_link(Buf *b, PyObject *link) {
    const char *ltid, *lsid, *lstate;
    Py_ssize_t ltlen, lslen, lstlen;
    uint64_t lflags;
    if (!PyTuple_Check(link) || PyTuple_GET_SIZE(link) != 4) {
        PyErr_SetString(PyExc_TypeError, "span link: expected a 4-tuple");
        return -1;
    }
    if (bytes_of(PyTuple_GET_ITEM(link, 0), &ltid, &ltlen) < 0 ||
        bytes_of(PyTuple_GET_ITEM(link, 1), &lsid, &lslen) < 0 ||
        as_u64(PyTuple_GET_ITEM(link, 2), &lflags) < 0 ||
        bytes_of(PyTuple_GET_ITEM(link, 3), &lstate, &lstlen) < 0)
        return -1;
    if (ltlen != 16 || lslen != 8) {
        PyErr_SetString(PyExc_ValueError, "span link with ids of the wrong size");
        return -1;
    }
    Py_ssize_t inner = 18 + 10 + 5 + (lstlen ? 1 + vsize((uint64_t)lstlen) + lstlen : 0);
    if (buf_reserve(b, 1 + 10 + inner) < 0)
        return -1;
    put_byte(b, 0x6a);
    put_varint(b, (uint64_t)inner);
    put_byte(b, 0x0a);
    put_byte(b, 0x10);
    put_raw(b, ltid, 16);
    put_byte(b, 0x12);
    put_byte(b, 0x08);
    put_raw(b, lsid, 8);
    if (lstlen) {
        put_byte(b, 0x1a);
        put_varint(b, (uint64_t)lstlen);
        put_raw(b, lstate, lstlen);
    }
    put_byte(b, 0x35);
    put_fixed32(b, (uint32_t)(lflags & 0xFF) | 0x300);
    return 0;
}

/* the spans of one record, to ``list`` or (NULL) the batch: their number, or -1 */
static Py_ssize_t encode(Encoder *self, PyObject *record, PyObject *list) {
    PyObject *rec = PySequence_Fast(record, "span record: expected a sequence");
    if (rec == NULL)
        return -1;
    Py_ssize_t out = -1, spans = 0;
    PyObject *query = NULL, *attempts = NULL;
    const char *cparent = NULL; /* the SpanExtra's, when the record has one */
    Py_ssize_t cplen = 0;
    PyObject *kept = NULL, *links = NULL;
    PyObject *req_headers = NULL, *resp_headers = NULL;
    Buf *b = &self->buf;
    b->len = 0;
    Py_ssize_t nfields = PySequence_Fast_GET_SIZE(rec);
    if (nfields != RECORD_FIELDS && nfields != RECORD_FIELDS + 1) {
        PyErr_SetString(PyExc_ValueError, "span record: wrong number of fields");
        goto fail;
    }
    PyObject **f = PySequence_Fast_ITEMS(rec);
    /* the optional SpanExtra: (client parent, kept, links) */
    if (nfields > RECORD_FIELDS && f[RECORD_FIELDS] != Py_None) {
        PyObject *x = f[RECORD_FIELDS];
        if (!PyTuple_Check(x) || PyTuple_GET_SIZE(x) != 3) {
            PyErr_SetString(PyExc_TypeError, "span record: the extra is a 3-tuple");
            goto fail;
        }
        if (bytes_of(PyTuple_GET_ITEM(x, 0), &cparent, &cplen) < 0)
            goto fail;
        if (cplen != 0 && cplen != 8) {
            PyErr_SetString(PyExc_ValueError, "span record with ids of the wrong size");
            goto fail;
        }
        kept = PyTuple_GET_ITEM(x, 1);
        if (!PyUnicode_Check(kept)) {
            PyErr_SetString(PyExc_TypeError, "span record: expected str");
            goto fail;
        }
        if (!PyUnicode_GET_LENGTH(kept))
            kept = NULL;
        links = PySequence_Fast(PyTuple_GET_ITEM(x, 2), "span record: expected links");
        if (links == NULL)
            goto fail;
    }
    const char *tid, *span, *parent, *state;
    Py_ssize_t tlen, slen, plen, stlen;
    if (bytes_of(f[0], &tid, &tlen) < 0 || bytes_of(f[1], &span, &slen) < 0 ||
        bytes_of(f[2], &parent, &plen) < 0 || bytes_of(f[5], &state, &stlen) < 0)
        goto fail;
    if (tlen != 16 || slen != 8 || (plen != 0 && plen != 8)) {
        PyErr_SetString(PyExc_ValueError, "span record with ids of the wrong size");
        goto fail;
    }
    int remote = PyObject_IsTrue(f[3]);
    int upgraded = PyObject_IsTrue(f[20]);
    if (remote < 0 || upgraded < 0)
        goto fail;
    uint64_t flags, start, end, status;
    if (as_u64(f[4], &flags) < 0 || as_u64(f[18], &start) < 0 || as_u64(f[19], &end) < 0 ||
        as_u64(f[16], &status) < 0)
        goto fail;
    PyObject *method = f[6], *route = f[7], *path = f[8], *address = f[10], *port = f[11];
    PyObject *client_address = f[12], *version = f[14], *user_agent = f[15], *error_type = f[17];
    PyObject *scheme = f[24];
    if (!PyUnicode_Check(route) || !PyUnicode_Check(f[9]) || !PyUnicode_Check(user_agent) ||
        !PyUnicode_Check(scheme) ||
        !PyUnicode_Check(error_type) || !PyUnicode_Check(method) || !PyUnicode_Check(path)) {
        PyErr_SetString(PyExc_TypeError, "span record: expected str");
        goto fail;
    }
    if (PyUnicode_GET_LENGTH(f[9])) {
        query = PyObject_CallOneArg(self->redact, f[9]);
        if (query == NULL)
            goto fail;
        if (!PyUnicode_Check(query)) {
            PyErr_SetString(PyExc_TypeError, "redact must return str");
            goto fail;
        }
    }
    /* SERVER span */
    if (put_head(b, tid, span, state, stlen, parent, plen, start, end) < 0 ||
        kv_str(b, KEY("url.path"), path) < 0 || kv_int(b, KEY("network.peer.port"), f[13]) < 0)
        goto fail;
    if (query != NULL && kv_str(b, KEY("url.query"), query) < 0)
        goto fail;
    req_headers = PySequence_Fast(f[22], "span record: expected captured headers");
    resp_headers = req_headers ? PySequence_Fast(f[23], "span record: expected captured headers")
                               : NULL;
    if (resp_headers == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(req_headers); i++)
        if (kv_strings(b, KEY("http.request.header."), PySequence_Fast_GET_ITEM(req_headers, i)) <
            0)
            goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(resp_headers); i++)
        if (kv_strings(b, KEY("http.response.header."),
                       PySequence_Fast_GET_ITEM(resp_headers, i)) < 0)
            goto fail;
    {
        /* the name: "{method} {route}", or the method when there is no route */
        Pieces ps = {.count = 0, .total = 0};
        int rc = pieces_add_str(&ps, method);
        if (rc == 0 && PyUnicode_GET_LENGTH(route)) {
            pieces_add_raw(&ps, " ", 1);
            rc = pieces_add_str(&ps, route);
        }
        if (rc == 0)
            rc = put_ld_pieces(b, 0x2a, &ps);
        pieces_clear(&ps);
        if (rc < 0)
            goto fail;
    }
    if (buf_reserve(b, 2) < 0)
        goto fail;
    put_byte(b, 0x30);
    put_byte(b, 0x02);
    if (kv_str(b, KEY("http.request.method"), method) < 0 ||
        kv_str(b, KEY("url.scheme"), scheme) < 0 ||
        kv_str(b, KEY("server.address"), address) < 0 ||
        kv_int(b, KEY("server.port"), port) < 0 ||
        kv_str(b, KEY("client.address"), client_address) < 0 ||
        kv_str(b, KEY("network.peer.address"), client_address) < 0 ||
        kv_str(b, KEY("network.protocol.version"), version) < 0)
        goto fail;
    if (PyUnicode_GET_LENGTH(route) && kv_str(b, KEY("http.route"), route) < 0)
        goto fail;
    if (PyUnicode_GET_LENGTH(user_agent) && kv_str(b, KEY("user_agent.original"), user_agent) < 0)
        goto fail;
    if (status && kv_int(b, KEY("http.response.status_code"), f[16]) < 0)
        goto fail;
    if (PyUnicode_GET_LENGTH(error_type) && kv_str(b, KEY("error.type"), error_type) < 0)
        goto fail;
    if (upgraded && put_kv(b, KEY("http.connection.upgrade"), "\x10\x01", 2) < 0)
        goto fail;
    if (buf_reserve(b, 4 + 6) < 0)
        goto fail;
    if (status >= 500)
        put_raw(b, STATUS_ERROR, 4);
    uint32_t trace_flags = (uint32_t)(flags & 0xFF);
    put_byte(b, 0x85);
    put_byte(b, 0x01);
    put_fixed32(b, trace_flags | 0x100 | (remote ? 0x200 : 0));
    if (kept != NULL && kv_str(b, KEY("hopwire.sampling.kept"), kept) < 0)
        goto fail;
    if (links != NULL) {
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(links); i++)
            if (put_link(b, PySequence_Fast_GET_ITEM(links, i)) < 0)
                goto fail;
    }
    if (emit(self, list) < 0)
        goto fail;
    spans = 1;
    /* CLIENT spans */
    attempts = PySequence_Fast(f[21], "span record: expected attempts");
    if (attempts == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(attempts); i++) {
        PyObject *a = PySequence_Fast(PySequence_Fast_GET_ITEM(attempts, i),
                                      "span record: expected an attempt");
        if (a == NULL)
            goto fail;
        Pieces url = {.count = 0, .total = 0};
        int ok = 0;
        if (PySequence_Fast_GET_SIZE(a) != 8) {
            PyErr_SetString(PyExc_ValueError, "attempt record: wrong number of fields");
            goto attempt_done;
        }
        PyObject **af = PySequence_Fast_ITEMS(a);
        const char *a_id;
        Py_ssize_t a_len;
        uint64_t a_start, a_end, a_status;
        if (bytes_of(af[0], &a_id, &a_len) < 0 || as_u64(af[1], &a_start) < 0 ||
            as_u64(af[2], &a_end) < 0 || as_u64(af[6], &a_status) < 0)
            goto attempt_done;
        if (a_len != 8) {
            PyErr_SetString(PyExc_ValueError, "attempt record with a span id of the wrong size");
            goto attempt_done;
        }
        if (!PyUnicode_Check(af[3]) || !PyUnicode_Check(af[7])) {
            PyErr_SetString(PyExc_TypeError, "span record: expected str");
            goto attempt_done;
        }
        /* url.full: the server's URL base, the path, then the (redacted) query */
        if (pieces_add_str(&url, af[3]) < 0 || pieces_add_str(&url, path) < 0)
            goto attempt_done;
        if (query != NULL) {
            pieces_add_raw(&url, "?", 1);
            if (pieces_add_str(&url, query) < 0)
                goto attempt_done;
        }
        if (put_head(b, tid, a_id, state, stlen, cplen ? cparent : span, 8, a_start,
                     a_end ? a_end : end) < 0 ||
            kv_str_pieces(b, KEY("url.full"), &url) < 0 || put_ld_str(b, 0x2a, method) < 0 ||
            buf_reserve(b, 2) < 0)
            goto attempt_done;
        put_byte(b, 0x30);
        put_byte(b, 0x03);
        if (kv_str(b, KEY("http.request.method"), method) < 0 ||
            kv_str(b, KEY("server.address"), af[4]) < 0 ||
            kv_int(b, KEY("server.port"), af[5]) < 0)
            goto attempt_done;
        if (a_status && kv_int(b, KEY("http.response.status_code"), af[6]) < 0)
            goto attempt_done;
        int a_error = PyUnicode_GET_LENGTH(af[7]) > 0;
        if (a_error && kv_str(b, KEY("error.type"), af[7]) < 0)
            goto attempt_done;
        if (buf_reserve(b, 4 + 6) < 0)
            goto attempt_done;
        if (a_status >= 400 || a_error)
            put_raw(b, STATUS_ERROR, 4);
        put_byte(b, 0x85);
        put_byte(b, 0x01);
        put_fixed32(b, trace_flags | 0x100);
        if (kept != NULL && kv_str(b, KEY("hopwire.sampling.kept"), kept) < 0)
            goto attempt_done;
        ok = emit(self, list) == 0;
        spans += ok;
    attempt_done:
        pieces_clear(&url);
        Py_DECREF(a);
        if (!ok)
            goto fail;
    }
    out = spans;
done:
    Py_XDECREF(query);
    Py_XDECREF(attempts);
    Py_XDECREF(req_headers);
    Py_XDECREF(resp_headers);
    Py_XDECREF(links);
    Py_DECREF(rec);
    return out;
fail:
    b->len = 0;
    goto done;
}

static PyObject *Encoder_spans_of(Encoder *self, PyObject *record) {
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    if (encode(self, record, list) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

static PyObject *Encoder_add(Encoder *self, PyObject *record) {
    Py_ssize_t before = self->batch.len;
    Py_ssize_t spans = encode(self, record, NULL);
    if (spans < 0) {
        self->batch.len = before; /* a bad record adds nothing */
        return NULL;
    }
    self->pending += spans;
    return PyLong_FromSsize_t(spans);
}

static PyObject *Encoder_take(Encoder *self, PyObject *args) {
    const char *resource, *scope;
    Py_ssize_t rlen, slen;
    if (!PyArg_ParseTuple(args, "y#y#", &resource, &rlen, &scope, &slen))
        return NULL;
    Py_ssize_t scope_len = slen + self->batch.len;
    Py_ssize_t rs_len = rlen + 1 + vsize((uint64_t)scope_len) + scope_len;
    Py_ssize_t total = 1 + vsize((uint64_t)rs_len) + rs_len;
    PyObject *body = PyBytes_FromStringAndSize(NULL, total);
    if (body == NULL)
        return NULL;
    Buf out = {PyBytes_AS_STRING(body), 0, total};
    put_byte(&out, 0x0a);
    put_varint(&out, (uint64_t)rs_len);
    put_raw(&out, resource, rlen);
    put_byte(&out, 0x12);
    put_varint(&out, (uint64_t)scope_len);
    put_raw(&out, scope, slen);
    if (self->batch.len)
        put_raw(&out, self->batch.data, self->batch.len);
    self->batch.len = 0;
    self->pending = 0;
    return body;
}

/* the batch as it is (ScopeSpans.spans entries), which empties: what a worker sends */
static PyObject *Encoder_drain(Encoder *self, PyObject *unused) {
    PyObject *out = PyBytes_FromStringAndSize(self->batch.data, self->batch.len);
    if (out == NULL)
        return NULL;
    self->batch.len = 0;
    self->pending = 0;
    return out;
}

/* the number of ScopeSpans.spans entries (tag 2, a length, that many bytes) ``data`` is made
 * of exactly, or -1 */
static Py_ssize_t count_entries(const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t at = 0, entries = 0;
    while (at < n) {
        if (p[at++] != 0x12)
            return -1;
        uint64_t len = 0;
        int shift = 0;
        for (;;) {
            if (at >= n || shift > 63)
                return -1;
            unsigned char c = p[at++];
            len |= (uint64_t)(c & 0x7f) << shift;
            if (!(c & 0x80))
                break;
            shift += 7;
        }
        if (len > (uint64_t)(n - at))
            return -1;
        at += (Py_ssize_t)len;
        entries++;
    }
    return entries;
}

/* extend(spans, count): the entries a worker's drain() gave, into the batch */
static PyObject *Encoder_extend(Encoder *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*n", &view, &count))
        return NULL;
    PyObject *out = NULL;
    if (count <= 0 || count_entries((const unsigned char *)view.buf, view.len) != count) {
        PyErr_SetString(PyExc_ValueError, "not that many encoded spans");
    } else if (buf_reserve(&self->batch, view.len) == 0) {
        put_raw(&self->batch, view.buf, view.len);
        self->pending += count;
        out = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&view);
    return out;
}

static PyObject *Encoder_pending(Encoder *self, void *closure) {
    return PyLong_FromSsize_t(self->pending);
}

static PyMethodDef Encoder_methods[] = {
    {"spans_of", (PyCFunction)Encoder_spans_of, METH_O,
     "The encoded spans (ScopeSpans.spans entries) of one SpanRecord."},
    {"add", (PyCFunction)Encoder_add, METH_O,
     "Encode one SpanRecord into the batch; the number of spans it added."},
    {"take", (PyCFunction)Encoder_take, METH_VARARGS,
     "take(resource, scope): the ExportTraceServiceRequest of the batch, which empties."},
    {"drain", (PyCFunction)Encoder_drain, METH_NOARGS,
     "The batch's encoded spans as they are (ScopeSpans.spans entries); it empties."},
    {"extend", (PyCFunction)Encoder_extend, METH_VARARGS,
     "extend(spans, count): add count encoded spans (what drain gave); ValueError if not."},
    {NULL, NULL, 0, NULL},
};

static PyObject *Encoder_name(PyObject *self, void *closure) { return PyUnicode_FromString("c"); }

static PyGetSetDef Encoder_getset[] = {
    {"name", Encoder_name, NULL, "Which encoder this is.", NULL},
    {"pending", (getter)Encoder_pending, NULL, "Spans in the batch.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwire.telemetry._otlp.Encoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Encoder(redact): OTLP bytes of span records, as otlp.Encoder writes them.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
    .tp_getset = Encoder_getset,
};

/* ---- log records: the same bytes as otlp.log_record (the reference) ------------------- */

/* LogRecord.attributes entry (tag 0x32): KeyValue{key, AnyValue} of a str key and a str,
   bool, int or float value (any other value: its str()) */
static int put_log_attribute(Buf *b, PyObject *key, PyObject *value) {
    Py_ssize_t klen, vlen;
    PyObject *kowner, *vowner = NULL, *text = NULL;
    const char *k = utf8_of(key, &klen, &kowner);
    if (k == NULL)
        return -1;
    char any[16];
    const char *v = NULL;
    Py_ssize_t alen; /* the AnyValue body */
    int kind;        /* 0 string, 1 bool, 2 int, 3 double */
    if (PyBool_Check(value)) {
        kind = 1;
        alen = 2;
    } else if (PyLong_Check(value)) {
        kind = 2;
        long long n = PyLong_AsLongLong(value);
        if (n == -1 && PyErr_Occurred()) {
            Py_XDECREF(kowner);
            return -1;
        }
        any[0] = 0x18;
        uint64_t u = (uint64_t)n;
        int i = 1;
        while (u > 0x7F) {
            any[i++] = (char)((u & 0x7F) | 0x80);
            u >>= 7;
        }
        any[i++] = (char)u;
        alen = i;
    } else if (PyFloat_Check(value)) {
        kind = 3;
        alen = 9;
    } else {
        kind = 0;
        if (!PyUnicode_Check(value)) {
            text = PyObject_Str(value);
            if (text == NULL) {
                Py_XDECREF(kowner);
                return -1;
            }
        }
        v = utf8_of(text ? text : value, &vlen, &vowner);
        if (v == NULL) {
            Py_XDECREF(kowner);
            Py_XDECREF(text);
            return -1;
        }
        alen = 1 + vsize(vlen) + vlen;
    }
    int rc = put_entry_head(b, 0x32, k, klen, alen);
    if (rc == 0) {
        if (kind == 0) {
            put_byte(b, 0x0a);
            put_varint(b, (uint64_t)vlen);
            put_raw(b, v, vlen);
        } else if (kind == 1) {
            put_byte(b, 0x10);
            put_byte(b, value == Py_True ? 1 : 0);
        } else if (kind == 2) {
            put_raw(b, any, alen);
        } else {
            double d = PyFloat_AS_DOUBLE(value);
            uint64_t bits;
            memcpy(&bits, &d, 8);
            put_byte(b, 0x21);
            put_fixed64(b, bits);
        }
    }
    Py_XDECREF(kowner);
    Py_XDECREF(vowner);
    Py_XDECREF(text);
    return rc;
}

static PyObject *log_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "log_record takes 8 arguments");
        return NULL;
    }
    PyObject *attrs = args[4], *trace = args[5], *span = args[6];
    uint64_t when, observed, severity;
    if (as_u64(args[0], &when) < 0 || as_u64(args[7], &observed) < 0 ||
        as_u64(args[1], &severity) < 0)
        return NULL;
    if (!PyDict_Check(attrs)) {
        PyErr_SetString(PyExc_TypeError, "log record: attributes must be a dict");
        return NULL;
    }
    const char *tid = NULL, *sid = NULL;
    Py_ssize_t tlen = 0, slen = 0;
    if (trace != Py_None && span != Py_None) {
        if (bytes_of(trace, &tid, &tlen) < 0 || bytes_of(span, &sid, &slen) < 0)
            return NULL;
        if (tlen != 16 || slen != 8) {
            PyErr_SetString(PyExc_ValueError, "log record: ids of the wrong size");
            return NULL;
        }
    }
    Buf b = {NULL, 0, 0};
    if (buf_reserve(&b, 64) < 0)
        return NULL;
    b.len = 6; /* room for the entry's tag and length, moved into place at the end */
    Py_ssize_t start = b.len;
    put_byte(&b, 0x09);
    put_fixed64(&b, when);
    put_byte(&b, 0x59);
    put_fixed64(&b, observed);
    put_byte(&b, 0x10);
    put_varint(&b, severity);
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    if (put_ld_str(&b, 0x1a, args[2]) < 0)
        goto fail;
    {
        Py_ssize_t n;
        PyObject *owner = NULL;
        const char *body; /* a str, or bytes already UTF-8 (the access log's line) */
        if (PyBytes_Check(args[3])) {
            body = PyBytes_AS_STRING(args[3]);
            n = PyBytes_GET_SIZE(args[3]);
        } else if ((body = utf8_of(args[3], &n, &owner)) == NULL) {
            goto fail;
        }
        int rc = buf_reserve(&b, 2 + 20 + n);
        if (rc == 0) {
            put_byte(&b, 0x2a);
            put_varint(&b, (uint64_t)(1 + vsize(n) + n));
            put_byte(&b, 0x0a);
            put_varint(&b, (uint64_t)n);
            put_raw(&b, body, n);
        }
        Py_XDECREF(owner);
        if (rc < 0)
            goto fail;
    }
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        if (value == Py_None)
            continue;
        if (put_log_attribute(&b, key, value) < 0)
            goto fail;
    }
    if (tid != NULL) {
        if (buf_reserve(&b, 5) < 0)
            goto fail;
        put_byte(&b, 0x45);
        put_fixed32(&b, 1); /* flags: sampled (only a sampled request's ids are given) */
        if (put_ld(&b, 0x4a, tid, 16) < 0 || put_ld(&b, 0x52, sid, 8) < 0)
            goto fail;
    }
    {
        Py_ssize_t body_len = b.len - start;
        int head = 1 + vsize((uint64_t)body_len);
        Py_ssize_t at = start - head;
        Buf h = {b.data, at, b.cap};
        put_byte(&h, 0x12);
        put_varint(&h, (uint64_t)body_len);
        PyObject *out = PyBytes_FromStringAndSize(b.data + at, b.len - at);
        PyMem_Free(b.data);
        return out;
    }
fail:
    PyMem_Free(b.data);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"log_record", (PyCFunction)(void (*)(void))log_record, METH_FASTCALL,
     "log_record(time_ns, severity_number, severity_text, body, attributes, trace_id, "
     "span_id, observed_ns): one ScopeLogs.log_records entry (see otlp.log_record)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hopwire.telemetry._otlp",
    "The compiled OTLP span and log-record encoders (see hopwire.telemetry.otlp).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__otlp(void) {
    if (PyType_Ready(&EncoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Encoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
