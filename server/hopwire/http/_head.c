/* The compiled response-head scan: the same answer as hopwire.http.head.forward_head.
 *
 * hopwire/http/head.py is the reference and documents the rules; this file walks the field
 * lines once, comparing each name with the few that matter to framing and hop-by-hop removal,
 * instead of the reference's searches of the lower-cased head.  A property test
 * (tests/unit/test_forward_head.py) proves the two give the same answer on random heads.
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

static PyMethodDef methods[] = {
    {"forward_head", (PyCFunction)(void (*)(void))forward_head, METH_FASTCALL,
     "forward_head(head, start, first): as hopwire.http.head.forward_head."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hopwire.http._head",
    "The compiled response-head scan (see hopwire.http.head.forward_head).", -1, methods,
};

PyMODINIT_FUNC PyInit__head(void) { return PyModule_Create(&module); }
