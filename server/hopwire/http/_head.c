/* The compiled head scans: the same answers as hopwire.http.head.forward_head and
 * hopwire.http.head.locate_head for responses, and as hopwire.http.path.NOT_PLAIN for a
 * request's path.
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
    PyObject *head = slice_of(buf, at, n);
    if (head == NULL)
        return NULL;
    PyObject *reason = PyBytes_FromStringAndSize(h + rfrom, line_end - rfrom);
    if (reason == NULL) {
        Py_DECREF(head);
        return NULL;
    }
    return Py_BuildValue("(NnnN)", head, end, line_end + 2, reason);
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

static PyMethodDef methods[] = {
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
