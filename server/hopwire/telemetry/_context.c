/* W3C trace context on the request path: new ids and the outbound traceparent line.
 *
 * hopwire/telemetry/tracing.py is the reference and documents the rules (Tracer.start,
 * Tracer.adopt, parse_traceparent); this file does in one call what the tracer would
 * otherwise do in a dozen: draw the ids, make the sampling decision of
 * ParentBased(TraceIdRatioBased) and write the header line the backend receives.
 *
 *   root(bound)  a new trace: "traceparent: 00-{trace}-{span}-0{2|3}\r\n", sampled when the
 *                trace id's low 64 bits are below bound (None: always).  An unsampled root is
 *                the line alone; a sampled one (line, trace id, span id, SERVER span id), raw.
 *   child(value) a canonical inbound traceparent ("00-" 32 hex "-" 16 hex "-" 2 hex, lower
 *                case, ids not zero) continued with a new span id and the parent's
 *                sampled/random flags: the line alone when unsampled, else (line, trace id,
 *                span id, SERVER span id, parent id, flags).  None for anything else (the
 *                tracer's parser decides whether it is valid).
 *
 * The ids come from xoshiro256**, seeded from getrandom(2) at import and again in every
 * child after fork (pthread_atfork), so that two workers never draw the same ids.  A property
 * test (tests/unit/test_context.py) proves the lines equal the reference's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_cbuf.h"
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t state[4];

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t next_u64(void) {
    uint64_t result = rotl(state[1] * 5, 7) * 9;
    uint64_t t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* 0 when the state came from getrandom(2); -1 when it had to be made from the pid, the
 * clocks and the old state (still distinct per process) */
static int seed(void) {
    uint64_t fresh[4];
    int ok = getrandom(fresh, sizeof fresh, 0) == (ssize_t)sizeof fresh;
    if (!ok) {
        struct timespec a, b;
        clock_gettime(CLOCK_REALTIME, &a);
        clock_gettime(CLOCK_MONOTONIC, &b);
        uint64_t x = ((uint64_t)getpid() << 32) ^ (uint64_t)a.tv_nsec ^ ((uint64_t)a.tv_sec << 20) ^
                     (uint64_t)b.tv_nsec ^ state[0] ^ state[3];
        for (int i = 0; i < 4; i++)
            fresh[i] = splitmix(&x);
    }
    memcpy(state, fresh, sizeof state);
    if (!(state[0] | state[1] | state[2] | state[3]))
        state[0] = 1; /* xoshiro's one forbidden state */
    return ok ? 0 : -1;
}

static void reseed_in_child(void) { (void)seed(); }

static inline uint64_t nonzero(void) {
    uint64_t x;
    do
        x = next_u64();
    while (!x);
    return x;
}

static const char HEX[] = "0123456789abcdef";

static inline void put_hex(char *out, uint64_t x) {
    for (int i = 15; i >= 0; i--) {
        out[i] = HEX[x & 15];
        x >>= 4;
    }
}

static inline PyObject *raw(uint64_t x) {
    unsigned char b[8];
    for (int i = 7; i >= 0; i--) {
        b[i] = (unsigned char)x;
        x >>= 8;
    }
    return PyBytes_FromStringAndSize((const char *)b, 8);
}

/* "traceparent: 00-" trace "-" span "-0" flag CRLF: 70 bytes */
#define PREFIX "traceparent: 00-"
#define PREFIX_LEN 16
#define LINE_LEN 70
#define SPAN_AT (PREFIX_LEN + 33)
#define FLAG_AT (SPAN_AT + 18)

static PyObject *new_line(char **out) {
    PyObject *line = PyBytes_FromStringAndSize(NULL, LINE_LEN);
    if (line == NULL)
        return NULL;
    char *s = PyBytes_AS_STRING(line);
    memcpy(s, PREFIX, PREFIX_LEN);
    s[PREFIX_LEN + 32] = '-';
    s[SPAN_AT + 16] = '-';
    s[SPAN_AT + 17] = '0';
    s[LINE_LEN - 2] = '\r';
    s[LINE_LEN - 1] = '\n';
    *out = s;
    return line;
}

/* ``out`` when every item was made, else NULL (the tuple, and what was made, freed) */
static PyObject *filled(PyObject *out) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(out); i++) {
        if (PyTuple_GET_ITEM(out, i) == NULL) {
            Py_DECREF(out); /* tupledealloc skips the NULL items */
            return NULL;
        }
    }
    return out;
}

/* the tuple of a sampled trace: (line, trace id, span id, SERVER span id), raw, and room for
 * ``extra`` more items the caller sets before ``filled``; NULL (line freed) on failure */
static PyObject *sampled_ids(Py_ssize_t extra, PyObject *line, const unsigned char *tid,
                             uint64_t span) {
    PyObject *out = PyTuple_New(4 + extra);
    if (out == NULL) {
        Py_DECREF(line);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, line);
    PyTuple_SET_ITEM(out, 1, PyBytes_FromStringAndSize((const char *)tid, 16));
    PyTuple_SET_ITEM(out, 2, raw(span));
    PyTuple_SET_ITEM(out, 3, raw(nonzero()));
    return out;
}

static PyObject *root(PyObject *module, PyObject *bound) {
    int sampled;
    uint64_t hi, lo;
    do {
        hi = next_u64();
        lo = next_u64();
    } while (!(hi | lo));
    if (bound == Py_None) {
        sampled = 1;
    } else {
        unsigned long long b = PyLong_AsUnsignedLongLong(bound);
        if (b == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        sampled = lo < b;
    }
    uint64_t span = nonzero();
    char *s;
    PyObject *line = new_line(&s);
    if (line == NULL)
        return NULL;
    put_hex(s + PREFIX_LEN, hi);
    put_hex(s + PREFIX_LEN + 16, lo);
    put_hex(s + SPAN_AT, span);
    s[FLAG_AT] = sampled ? '3' : '2'; /* random (level 2), and sampled */
    if (!sampled)
        return line;
    unsigned char tid[16];
    for (int i = 7; i >= 0; i--) {
        tid[i] = (unsigned char)hi;
        tid[8 + i] = (unsigned char)lo;
        hi >>= 8;
        lo >>= 8;
    }
    PyObject *out = sampled_ids(0, line, tid, span);
    return out == NULL ? NULL : filled(out);
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* n lower-case hex digits into raw bytes; 0 on a bad digit */
static int unhex(const char *s, int n, unsigned char *out, int *zero) {
    int any = 0;
    for (int i = 0; i < n; i += 2) {
        int a = hex_value(s[i]), b = hex_value(s[i + 1]);
        if (a < 0 || b < 0)
            return 0;
        out[i / 2] = (unsigned char)(a << 4 | b);
        any |= a | b;
    }
    *zero = !any;
    return 1;
}

static PyObject *child(PyObject *module, PyObject *value) {
    if (!PyBytes_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "child() takes bytes");
        return NULL;
    }
    const char *v = PyBytes_AS_STRING(value);
    unsigned char tid[16], parent[8], flags_raw[1];
    int zero_tid, zero_parent, zero_flags;
    if (PyBytes_GET_SIZE(value) != 55 || v[0] != '0' || v[1] != '0' || v[2] != '-' ||
        v[35] != '-' || v[52] != '-' || !unhex(v + 3, 32, tid, &zero_tid) ||
        !unhex(v + 36, 16, parent, &zero_parent) || !unhex(v + 53, 2, flags_raw, &zero_flags) ||
        zero_tid || zero_parent)
        Py_RETURN_NONE;
    int flags = flags_raw[0] & 3; /* ParentBased: the parent's sampled and random flags */
    uint64_t span = nonzero();
    char *s;
    PyObject *line = new_line(&s);
    if (line == NULL)
        return NULL;
    memcpy(s + PREFIX_LEN, v + 3, 32);
    put_hex(s + SPAN_AT, span);
    s[FLAG_AT] = HEX[flags];
    if (!(flags & 1))
        return line;
    PyObject *out = sampled_ids(2, line, tid, span);
    if (out == NULL)
        return NULL;
    PyTuple_SET_ITEM(out, 4, PyBytes_FromStringAndSize((const char *)parent, 8));
    PyTuple_SET_ITEM(out, 5, PyLong_FromLong(flags));
    return filled(out);
}

/* ---- Keeper: the end of an unsampled exchange, when its spans may be kept ------------------
 *
 * With tracing.keep on, an unsampled exchange's observers begin with a Keeper instead of the
 * tracer: at the end it reads the status, the error kind and the duration, and only when
 * they call for it hands the exchange to the tracer's ``keep`` (Python).  Every other
 * request costs this one C call: the fields are read at their __slots__ offsets. */

enum { K_STATUS, K_ERROR_TYPE, K_T0, K_T1, K_COUNT };
static const char *KNAMES[K_COUNT] = {"status", "error_type", "t0", "t1"};
static PyObject *knames[K_COUNT];
static SlotCache kslots[K_COUNT]; /* where each name is found (_cbuf.h) */

/* a new reference to ex.<name> */
static PyObject *field(PyObject *ex, int name) { return slot_get(&kslots[name], ex, knames[name]); }

typedef struct {
    PyObject_HEAD
    PyObject *keep; /* the tracer's keep(ex) */
    int errors;
    double slower; /* seconds; 0: off */
} Keeper;

static int Keeper_init(Keeper *self, PyObject *args, PyObject *kwds) {
    PyObject *keep;
    int errors;
    double slower;
    if (!PyArg_ParseTuple(args, "Opd", &keep, &errors, &slower))
        return -1;
    Py_XSETREF(self->keep, Py_NewRef(keep));
    self->errors = errors;
    self->slower = slower;
    return 0;
}

static void Keeper_dealloc(Keeper *self) {
    Py_XDECREF(self->keep);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* start(ex): nothing (the tracer started the exchange) */
static PyObject *Keeper_start(Keeper *self, PyObject *ex) { Py_RETURN_NONE; }

/* 1: keep the exchange's spans, 0: not, -1: an error */
static int wanted(Keeper *self, PyObject *ex) {
    if (self->errors) {
        PyObject *status = field(ex, K_STATUS);
        if (status == NULL)
            return -1;
        long code = PyLong_AsLong(status);
        Py_DECREF(status);
        if (code == -1 && PyErr_Occurred())
            return -1;
        if (code >= 500)
            return 1;
        PyObject *error = field(ex, K_ERROR_TYPE);
        if (error == NULL)
            return -1;
        int failed = PyObject_IsTrue(error);
        Py_DECREF(error);
        if (failed != 0)
            return failed;
    }
    if (self->slower > 0) {
        PyObject *t0 = field(ex, K_T0), *t1 = t0 ? field(ex, K_T1) : NULL;
        if (t1 == NULL) {
            Py_XDECREF(t0);
            return -1;
        }
        double spent = PyFloat_AsDouble(t1) - PyFloat_AsDouble(t0);
        Py_DECREF(t0);
        Py_DECREF(t1);
        if (PyErr_Occurred())
            return -1;
        return spent > self->slower;
    }
    return 0;
}

/* finish(ex): the tracer's keep(ex) when the exchange failed or was slow */
static PyObject *Keeper_finish(Keeper *self, PyObject *ex) {
    int keep = wanted(self, ex);
    if (keep < 0)
        return NULL;
    if (keep)
        return PyObject_CallOneArg(self->keep, ex);
    Py_RETURN_NONE;
}

static PyMethodDef Keeper_methods[] = {
    {"start", (PyCFunction)Keeper_start, METH_O, "Nothing: the tracer started the exchange."},
    {"finish", (PyCFunction)Keeper_finish, METH_O,
     "Hand a failed or slow exchange to the tracer's keep."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KeeperType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwire.telemetry._context.Keeper",
    .tp_basicsize = sizeof(Keeper),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Keeper(keep, errors, slower): the observer of an unsampled exchange whose "
              "spans may be kept after the fact.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Keeper_init,
    .tp_dealloc = (destructor)Keeper_dealloc,
    .tp_methods = Keeper_methods,
};

static PyMethodDef methods[] = {
    {"root", root, METH_O, "A new trace's traceparent line (and raw ids when sampled)."},
    {"child", child, METH_O, "A canonical inbound traceparent continued, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_context", "W3C trace context lines for the request path.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__context(void) {
    if (seed() != 0) {
        PyErr_SetString(PyExc_ImportError, "hopwire.telemetry._context: getrandom(2) failed");
        return NULL;
    }
    static int registered = 0;
    if (!registered) {
        if (pthread_atfork(NULL, NULL, reseed_in_child) != 0) {
            PyErr_SetString(PyExc_ImportError, "hopwire.telemetry._context: pthread_atfork failed");
            return NULL;
        }
        registered = 1;
    }
    for (int i = 0; i < K_COUNT; i++) {
        if (knames[i] == NULL && (knames[i] = PyUnicode_InternFromString(KNAMES[i])) == NULL)
            return NULL;
    }
    if (PyType_Ready(&KeeperType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Keeper", (PyObject *)&KeeperType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
