/* The compiled head scans: the same answers as hopwire.http.head.forward_head and
 * hopwire.http.head.locate_head for responses, and as hopwire.http.head.scan_fields and
 * hopwire.http.path.NOT_PLAIN for a request's fields and path, and as
 * hopwire.http.head.field_lines for the lines of the head hopwire writes.
 *
 * hopwire/http/head.py is the reference and documents the rules; this file walks the field
 * lines once, comparing each name with the few that matter to framing and hop-by-hop removal,
 * instead of the reference's searches of the lower-cased head.  A property test
 * (tests/unit/test_compiled_head.py) proves the two give the same answer on random heads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <strings.h>

enum { OTHER, CONTENT_LENGTH, CONNECTION, TRANSFER_ENCODING, KEEP_ALIVE, RARE };

static int name_kind(const char *name, Py_ssize_t len) {
    switch (len) {
    case 2:
        return strncasecmp(name, "te", 2) == 0 ? RARE : OTHER;
    case 7:
        return (strncasecmp(name, "trailer", 7) == 0 || strncasecmp(name, "upgrade", 7) == 0)
                   ? RARE
                   : OTHER;
    case 10:
        if (strncasecmp(name, "connection", 10) == 0)
            return CONNECTION;
        return strncasecmp(name, "keep-alive", 10) == 0 ? KEEP_ALIVE : OTHER;
    case 14:
        return strncasecmp(name, "content-length", 14) == 0 ? CONTENT_LENGTH : OTHER;
    case 16:
        return strncasecmp(name, "proxy-connection", 16) == 0 ? RARE : OTHER;
    case 17:
        return strncasecmp(name, "transfer-encoding", 17) == 0 ? TRANSFER_ENCODING : OTHER;
    }
    return OTHER;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* [*from, *to) without the spaces and tabs at either end */
static void strip(const char *s, Py_ssize_t *from, Py_ssize_t *to) {
    while (*from < *to && is_ows(s[*from]))
        (*from)++;
    while (*to > *from && is_ows(s[*to - 1]))
        (*to)--;
}

/* Connection tokens that name no field: close, keep-alive, upgrade, or empty */
static int known_tokens(const char *s, Py_ssize_t from, Py_ssize_t to) {
    Py_ssize_t at = from;
    while (at <= to) {
        Py_ssize_t end = at;
        while (end < to && s[end] != ',')
            end++;
        Py_ssize_t a = at, b = end;
        strip(s, &a, &b);
        Py_ssize_t n = b - a;
        if (!(n == 0 || (n == 5 && strncasecmp(s + a, "close", 5) == 0) ||
              (n == 10 && strncasecmp(s + a, "keep-alive", 10) == 0) ||
              (n == 7 && strncasecmp(s + a, "upgrade", 7) == 0)))
            return 0;
        at = end + 1;
    }
    return 1;
}

static int append_slice(PyObject *parts, const char *s, Py_ssize_t from, Py_ssize_t to) {
    PyObject *piece = PyBytes_FromStringAndSize(s + from, to - from);
    if (piece == NULL)
        return -1;
    int rc = PyList_Append(parts, piece);
    Py_DECREF(piece);
    return rc;
}

static PyObject *forward_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1]) ||
        !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "forward_head(head: bytes, start: int, first: bytes)");
        return NULL;
    }
    PyObject *head_obj = args[0], *first = args[2];
    const char *head = PyBytes_AS_STRING(head_obj);
    Py_ssize_t size = PyBytes_GET_SIZE(head_obj);
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t last = size - 2; /* the final empty line */
    if (start < 0 || last < start) {
        PyErr_SetString(PyExc_ValueError, "start outside the head");
        return NULL;
    }
    /* the lines to cut out, at most one of each kind */
    Py_ssize_t cuts[3][2];
    int ncuts = 0, chunked = 0, seen_conn = 0, seen_te = 0, seen_ka = 0;
    Py_ssize_t cl_from = -1, cl_to = -1;
    Py_ssize_t line = start;
    while (line < last) {
        const char *cr = memchr(head + line, '\r', last - line);
        Py_ssize_t end = cr ? cr - head : last;
        const char *colon = memchr(head + line, ':', end - line);
        if (colon == NULL)
            Py_RETURN_NONE; /* not a head the parser validated: the reference decides */
        Py_ssize_t name_end = colon - head;
        int kind = name_kind(head + line, name_end - line);
        Py_ssize_t vfrom = name_end + 1, vto = end;
        switch (kind) {
        case RARE:
            Py_RETURN_NONE;
        case CONTENT_LENGTH:
            if (cl_from < 0) {
                strip(head, &vfrom, &vto);
                if (vto - vfrom > 20)
                    Py_RETURN_NONE; /* refused by response_fields */
                cl_from = vfrom;
                cl_to = vto;
            }
            break;
        case CONNECTION:
            if (seen_conn++ || !known_tokens(head, vfrom, vto))
                Py_RETURN_NONE;
            break;
        case TRANSFER_ENCODING:
            strip(head, &vfrom, &vto);
            if (seen_te++ || vto - vfrom != 7 || strncasecmp(head + vfrom, "chunked", 7) != 0)
                Py_RETURN_NONE;
            chunked = 1;
            break;
        case KEEP_ALIVE:
            if (seen_ka++)
                Py_RETURN_NONE;
            break;
        }
        if (kind == CONNECTION || kind == TRANSFER_ENCODING || kind == KEEP_ALIVE) {
            cuts[ncuts][0] = line;
            cuts[ncuts][1] = end + 2;
            ncuts++;
        }
        line = end + 2;
    }
    PyObject *parts = PyList_New(1);
    if (parts == NULL)
        return NULL;
    Py_INCREF(first);
    PyList_SET_ITEM(parts, 0, first);
    Py_ssize_t pos = start;
    for (int i = 0; i < ncuts; i++) { /* in the order of the lines */
        if (cuts[i][0] > pos && append_slice(parts, head, pos, cuts[i][0]) < 0)
            goto fail;
        pos = cuts[i][1];
    }
    if (pos < last && append_slice(parts, head, pos, last) < 0)
        goto fail;
    PyObject *cl;
    if (cl_from >= 0) {
        cl = PyBytes_FromStringAndSize(head + cl_from, cl_to - cl_from);
        if (cl == NULL)
            goto fail;
    } else {
        cl = Py_NewRef(Py_None);
    }
    PyObject *result = PyTuple_New(4);
    if (result == NULL) {
        Py_DECREF(cl);
        goto fail;
    }
    PyTuple_SET_ITEM(result, 0, parts);
    PyTuple_SET_ITEM(result, 1, cl);
    PyTuple_SET_ITEM(result, 2, PyBool_FromLong(chunked));
    PyTuple_SET_ITEM(result, 3, Py_NewRef(Py_None));
    return result;
fail:
    Py_DECREF(parts);
    return NULL;
}

/* [at, at + n) of buf as bytes: buf itself when that is all of it */
static PyObject *slice_of(PyObject *buf, Py_ssize_t at, Py_ssize_t n) {
    if (at == 0 && n == PyBytes_GET_SIZE(buf))
        return Py_NewRef(buf);
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(buf) + at, n);
}

static PyObject *locate_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "locate_head(buf: bytes, at: int)");
        return NULL;
    }
    PyObject *buf = args[0];
    const char *s = PyBytes_AS_STRING(buf);
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    Py_ssize_t at = PyLong_AsSsize_t(args[1]);
    if (at == -1 && PyErr_Occurred())
        return NULL;
    if (at < 0) {
        PyErr_SetString(PyExc_ValueError, "no head at this offset");
        return NULL;
    }
    while (at < size && (s[at] == '\r' || s[at] == '\n'))
        at++;
    Py_ssize_t end = -1;
    for (Py_ssize_t i = at; i + 3 < size; i++) {
        const char *cr = memchr(s + i, '\r', size - 3 - i);
        if (cr == NULL)
            break;
        i = cr - s;
        if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n') {
            end = i + 4;
            break;
        }
    }
    if (end < 0) {
        PyErr_SetString(PyExc_ValueError, "no complete head at this offset");
        return NULL;
    }
    const char *h = s + at;
    Py_ssize_t n = end - at;
    Py_ssize_t line_end = 0; /* the first CRLF: there is one, the head ends in CRLF CRLF */
    while (!(h[line_end] == '\r' && h[line_end + 1] == '\n'))
        line_end++;
    const char *sp1 = memchr(h, ' ', line_end);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line_end - (sp1 + 1 - h)) : NULL;
    Py_ssize_t rfrom = sp2 ? sp2 + 1 - h : line_end;
    for (Py_ssize_t i = rfrom; i < line_end; i++) {
        unsigned char c = (unsigned char)h[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F) {
            PyObject *reason = PyBytes_FromStringAndSize(
                h + rfrom, line_end - rfrom < 64 ? line_end - rfrom : 64);
            if (reason != NULL) {
                PyErr_Format(PyExc_ValueError, "control character in the reason phrase %R",
                             reason);
                Py_DECREF(reason);
            }
            return NULL;
        }
    }
    /* the Content-Length value, when it is at most 18 digits (the parser refuses a second) */
    long long length = -1;
    for (Py_ssize_t line = line_end + 2; line < n - 2;) {
        Py_ssize_t stop = line;
        while (!(h[stop] == '\r' && h[stop + 1] == '\n'))
            stop++;
        if (stop - line >= 15 && strncasecmp(h + line, "content-length:", 15) == 0) {
            Py_ssize_t a = line + 15, b = stop;
            while (a < b && is_ows(h[a]))
                a++;
            while (b > a && is_ows(h[b - 1]))
                b--;
            if (b > a && b - a <= 18) {
                length = 0;
                for (Py_ssize_t i = a; i < b && length >= 0; i++)
                    length = (h[i] >= '0' && h[i] <= '9') ? length * 10 + (h[i] - '0') : -1;
            }
            break;
        }
        line = stop + 2;
    }
    PyObject *head = slice_of(buf, at, n);
    if (head == NULL)
        return NULL;
    PyObject *reason = PyBytes_FromStringAndSize(h + rfrom, line_end - rfrom);
    if (reason == NULL) {
        Py_DECREF(head);
        return NULL;
    }
    return Py_BuildValue("(NnnNL)", head, end, line_end + 2, reason, length);
}

/* bytes of an encoded path used as they are (hopwire.http.path._VALID): % is not one */
static const char PLAIN[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                            "-._~!$&'()*+,;=:@[]/";
static unsigned char plain_byte[256];

static PyObject *plain_path(PyObject *self, PyObject *path) {
    if (!PyBytes_Check(path)) {
        PyErr_SetString(PyExc_TypeError, "plain_path(path: bytes)");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(path);
    Py_ssize_t n = PyBytes_GET_SIZE(path);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!plain_byte[s[i]])
            Py_RETURN_FALSE;
        if (s[i] == '/' && i + 1 < n && (s[i + 1] == '/' || s[i + 1] == '.'))
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* -- the request's fields (hopwire.http.head.scan_fields) ---------------------------------- */

enum {
    F_KEPT, F_HOST, F_CONNECTION, F_CONTENT_LENGTH, F_TRANSFER_ENCODING, F_EXPECT, F_UPGRADE,
    F_TRACE, F_FORWARDED, F_DROPPED
};

static int eq(const char *name, Py_ssize_t len, const char *lower, Py_ssize_t n) {
    return len == n && strncasecmp(name, lower, n) == 0;
}

#define W3C 1 /* traced: traceparent and tracestate are set apart */
#define B3 2  /* traced: b3 and X-B3-* are set apart */

/* what the scan does with a field of this name (traced: which trace context is set apart) */
static int field_kind(const char *name, Py_ssize_t len, long traced) {
    switch (len) {
    case 2:
        if (eq(name, len, "te", 2))
            return F_DROPPED;
        return (traced & B3) && eq(name, len, "b3", 2) ? F_TRACE : F_KEPT;
    case 4:
        return eq(name, len, "host", 4) ? F_HOST : F_KEPT;
    case 6:
        return eq(name, len, "expect", 6) ? F_EXPECT : F_KEPT;
    case 7:
        if (eq(name, len, "upgrade", 7))
            return F_UPGRADE;
        return eq(name, len, "trailer", 7) ? F_DROPPED : F_KEPT;
    case 9:
        return eq(name, len, "x-real-ip", 9) ? F_FORWARDED : F_KEPT;
    case 10:
        if (eq(name, len, "connection", 10))
            return F_CONNECTION;
        if (eq(name, len, "keep-alive", 10))
            return F_DROPPED;
        if ((traced & B3) && eq(name, len, "x-b3-flags", 10))
            return F_TRACE;
        return (traced & W3C) && eq(name, len, "tracestate", 10) ? F_TRACE : F_KEPT;
    case 11:
        if ((traced & B3) && eq(name, len, "x-b3-spanid", 11))
            return F_TRACE;
        return (traced & W3C) && eq(name, len, "traceparent", 11) ? F_TRACE : F_KEPT;
    case 12:
        return (traced & B3) && (eq(name, len, "x-b3-traceid", 12) || eq(name, len, "x-b3-sampled", 12))
                   ? F_TRACE
                   : F_KEPT;
    case 14:
        return eq(name, len, "content-length", 14) ? F_CONTENT_LENGTH : F_KEPT;
    case 15:
        return eq(name, len, "x-forwarded-for", 15) ? F_FORWARDED : F_KEPT;
    case 16:
        if (eq(name, len, "x-forwarded-host", 16) || eq(name, len, "x-forwarded-port", 16))
            return F_FORWARDED;
        return eq(name, len, "proxy-connection", 16) ? F_DROPPED : F_KEPT;
    case 17:
        if (eq(name, len, "transfer-encoding", 17))
            return F_TRANSFER_ENCODING;
        if ((traced & B3) && eq(name, len, "x-b3-parentspanid", 17))
            return F_TRACE;
        return eq(name, len, "x-forwarded-proto", 17) ? F_FORWARDED : F_KEPT;
    }
    return F_KEPT;
}

/* bytes.strip()'s whitespace */
static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

static PyObject *lower_bytes(const char *s, Py_ssize_t n) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    char *d = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        d[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return out;
}

/* the lower-case, stripped tokens of a Connection value, appended to tokens */
static int add_tokens(PyObject *tokens, const char *s, Py_ssize_t n) {
    Py_ssize_t at = 0;
    for (;;) {
        Py_ssize_t end = at;
        while (end < n && s[end] != ',')
            end++;
        Py_ssize_t a = at, b = end;
        while (a < b && is_space(s[a]))
            a++;
        while (b > a && is_space(s[b - 1]))
            b--;
        PyObject *token = lower_bytes(s + a, b - a);
        if (token == NULL || PyList_Append(tokens, token) < 0) {
            Py_XDECREF(token);
            return -1;
        }
        Py_DECREF(token);
        if (end >= n)
            return 0;
        at = end + 1;
    }
}

static PyObject *opt(PyObject *o) { return o ? o : Py_NewRef(Py_None); }

static PyObject *scan_fields(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_fields(headers: list, traced: bool, trusted: bool, http10: bool)");
        return NULL;
    }
    PyObject *headers = args[0];
    long traced = PyLong_AsLong(args[1]); /* W3C | B3, what is set apart (a bool: W3C) */
    if (traced == -1 && PyErr_Occurred())
        return NULL;
    int trusted = PyObject_IsTrue(args[2]), http10 = PyObject_IsTrue(args[3]);
    if (trusted < 0 || http10 < 0)
        return NULL;
    PyObject *kept = PyList_New(0), *tokens = PyList_New(0);
    PyObject *host = NULL, *te = NULL, *cl = NULL, *upgrade = NULL, *fwd = NULL;
    PyObject *tfields = NULL, *problem = NULL;
    Py_ssize_t hosts = 0;
    int expect = 0;
    if (kept == NULL || tokens == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
        PyObject *pair = PyList_GET_ITEM(headers, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "headers: a list of (bytes, bytes)");
            goto fail;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        const char *v = PyBytes_AS_STRING(value);
        Py_ssize_t vn = PyBytes_GET_SIZE(value);
        switch (field_kind(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), traced)) {
        case F_KEPT:
            if (PyList_Append(kept, pair) < 0)
                goto fail;
            break;
        case F_HOST:
            hosts++;
            Py_XSETREF(host, Py_NewRef(value));
            break;
        case F_CONNECTION:
            if (add_tokens(tokens, v, vn) < 0)
                goto fail;
            break;
        case F_CONTENT_LENGTH:
            if (vn > 20) {
                problem = Py_BuildValue("(iO)", 1, value);
                goto done;
            }
            Py_XSETREF(cl, Py_NewRef(value));
            break;
        case F_TRANSFER_ENCODING:
            if (te == NULL) {
                te = Py_NewRef(value);
            } else {
                PyObject *joined = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(te) + 1 + vn);
                if (joined == NULL)
                    goto fail;
                char *d = PyBytes_AS_STRING(joined);
                memcpy(d, PyBytes_AS_STRING(te), PyBytes_GET_SIZE(te));
                d[PyBytes_GET_SIZE(te)] = ',';
                memcpy(d + PyBytes_GET_SIZE(te) + 1, v, vn);
                Py_SETREF(te, joined);
            }
            break;
        case F_EXPECT:
            if (!eq(v, vn, "100-continue", 12)) {
                problem = Py_BuildValue("(iO)", 2, value);
                goto done;
            }
            if (!http10) { /* RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0 */
                if (PyList_Append(kept, pair) < 0)
                    goto fail;
                expect = 1;
            }
            break;
        case F_UPGRADE:
            Py_XSETREF(upgrade, Py_NewRef(value));
            break;
        case F_TRACE:
            if (tfields == NULL && (tfields = PyList_New(0)) == NULL)
                goto fail;
            if (PyList_Append(tfields, pair) < 0)
                goto fail;
            break;
        case F_FORWARDED:
            if (trusted) {
                if (fwd == NULL && (fwd = PyDict_New()) == NULL)
                    goto fail;
                PyObject *lname = lower_bytes(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name));
                if (lname == NULL || PyDict_SetItem(fwd, lname, value) < 0) {
                    Py_XDECREF(lname);
                    goto fail;
                }
                Py_DECREF(lname);
            }
            break;
        }
    }
done:
    if (PyErr_Occurred())
        goto fail;
    return Py_BuildValue("(NNnNNNNNNON)", kept, opt(host), hosts, tokens, opt(te), opt(cl),
                         opt(upgrade), opt(fwd), opt(tfields), expect ? Py_True : Py_False,
                         opt(problem));
fail:
    Py_XDECREF(kept);
    Py_XDECREF(tokens);
    Py_XDECREF(host);
    Py_XDECREF(te);
    Py_XDECREF(cl);
    Py_XDECREF(upgrade);
    Py_XDECREF(fwd);
    Py_XDECREF(tfields);
    Py_XDECREF(problem);
    return NULL;
}

/* -- a head's field lines (hopwire.http.head.field_lines) ------------------------------------ */

static PyObject *field_lines(PyObject *self, PyObject *fields) {
    PyObject *seq = PySequence_Fast(fields, "field_lines(fields: a sequence of (bytes, bytes))");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "fields: a sequence of (bytes, bytes)");
            Py_DECREF(seq);
            return NULL;
        }
        size += PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 0)) +
                PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 1)) + 4;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    char *d = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        memcpy(d, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name));
        d += PyBytes_GET_SIZE(name);
        *d++ = ':';
        *d++ = ' ';
        memcpy(d, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
        d += PyBytes_GET_SIZE(value);
        *d++ = '\r';
        *d++ = '\n';
    }
    Py_DECREF(seq);
    return out;
}

static PyMethodDef methods[] = {
    {"field_lines", (PyCFunction)field_lines, METH_O,
     "field_lines(fields): as hopwire.http.head.field_lines."},
    {"scan_fields", (PyCFunction)(void (*)(void))scan_fields, METH_FASTCALL,
     "scan_fields(headers, traced, trusted, http10): as hopwire.http.head.scan_fields."},
    {"plain_path", (PyCFunction)plain_path, METH_O,
     "plain_path(path): True when hopwire.http.path.NOT_PLAIN finds nothing in it."},
    {"locate_head", (PyCFunction)(void (*)(void))locate_head, METH_FASTCALL,
     "locate_head(buf, at): as hopwire.http.head.locate_head."},
    {"forward_head", (PyCFunction)(void (*)(void))forward_head, METH_FASTCALL,
     "forward_head(head, start, first): as hopwire.http.head.forward_head."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hopwire.http._head",
    "The compiled response-head scan (see hopwire.http.head.forward_head).", -1, methods,
};

PyMODINIT_FUNC PyInit__head(void) {
    for (const char *c = PLAIN; *c; c++)
        plain_byte[(unsigned char)*c] = 1;
    return PyModule_Create(&module);
}
