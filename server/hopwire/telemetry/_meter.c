/* The metrics observer's per-request part in C: metrics.PyMeter.start/finish, the same rows
 * (tests/unit/test_compiled_meter.py compares the two on random exchanges).  The fold, which
 * runs once a second, stays in Python (metrics.Meter.spill).
 *
 * A request adds into one row of its meter, keyed by (status, method, protocol): the count,
 * the request and response bytes, the duration's sum and bucket, the last sampled request of
 * its bucket (an exemplar); with metrics.otlp on ("rich"), also its backend attempt's
 * duration per server, for http.client.request.duration.  Measured, the Python finish ran
 * ~1,200 instructions of the interpreter per request, ~2,400 with metrics.otlp on.
 *
 * With tracing.keep on (``keeping``), the meter also ends an unsampled exchange as the
 * tracer's Keeper would: a failed one (5xx, an error kind) or a slow one is handed to the
 * tracer's keep(ex).  It reads the trace, the status and the duration anyway, so keeping
 * costs the requests that are not kept one test, where a Keeper among the observers cost a
 * call (~500 instructions).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include "_cbuf.h"

enum {
    A_T0, A_T1, A_STATUS, A_METHOD, A_REQ_BYTES, A_RESP_BYTES, A_TRACE, A_SAMPLED,
    A_ERROR_TYPE, A_HTTP10, A_ATTEMPTS, A_ORIGIN_STATUS, A_SERVER, A_ORIGIN_T0, A_TIMED, A_GRPC,
    A_DOWN, A_VERSION, A_COUNT
};
static const char *NAMES[A_COUNT] = {
    "t0", "t1", "status", "method", "req_bytes", "resp_bytes", "trace", "sampled",
    "error_type", "http10", "attempts", "origin_status", "server", "origin_t0", "timed", "grpc",
    "down", "version",
};
static PyObject *names[A_COUNT];
static SlotCache slots[A_COUNT];
static PyObject *s_http, *s_websocket, *s_grpc, *s_v10, *s_v11, *one, *i101;

/* ---- a row: the counts of one key since the last fold, as C numbers ---------------------- */

/* a backend attempt's counts for http.client.request.duration: per server, and per origin
   status when it is not the exchange's (origin NULL: the same) */
typedef struct {
    PyObject *server;
    PyObject *origin;
    double total;
    long long *buckets;
} Client;

typedef struct {
    PyObject_HEAD
    long long count, req, resp;
    double total;
    long long *buckets;   /* nbounds + 1 */
    PyObject *exemplars;  /* NULL, or a list of nbounds + 1: None or (trace, seconds, end) */
    Client *clients;      /* rich only */
    Py_ssize_t nclients, cap;
    Py_ssize_t nb;        /* nbounds + 1 */
} Row;

static int Row_traverse(Row *self, visitproc visit, void *arg) {
    Py_VISIT(self->exemplars);
    for (Py_ssize_t i = 0; i < self->nclients; i++) {
        Py_VISIT(self->clients[i].server);
        Py_VISIT(self->clients[i].origin);
    }
    return 0;
}

static int Row_clear(Row *self) {
    Py_CLEAR(self->exemplars);
    for (Py_ssize_t i = 0; i < self->nclients; i++) {
        Py_CLEAR(self->clients[i].server);
        Py_CLEAR(self->clients[i].origin);
    }
    return 0;
}

static void Row_dealloc(Row *self) {
    PyObject_GC_UnTrack(self);
    Row_clear(self);
    for (Py_ssize_t i = 0; i < self->nclients; i++)
        PyMem_Free(self->clients[i].buckets);
    PyMem_Free(self->clients);
    PyMem_Free(self->buckets);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject RowType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwire.telemetry._meter.Row",
    .tp_basicsize = sizeof(Row),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The counts of one row since the last fold (Meter.take gives them as lists).",
    .tp_traverse = (traverseproc)Row_traverse,
    .tp_clear = (inquiry)Row_clear,
    .tp_dealloc = (destructor)Row_dealloc,
};

static Row *new_row(Py_ssize_t nb) {
    Row *row = PyObject_GC_New(Row, &RowType);
    if (row == NULL)
        return NULL;
    row->count = row->req = row->resp = 0;
    row->total = 0.0;
    row->exemplars = NULL;
    row->clients = NULL;
    row->nclients = row->cap = 0;
    row->nb = nb;
    row->buckets = PyMem_Calloc(nb, sizeof(long long));
    if (row->buckets == NULL) {
        PyObject_GC_Del(row);
        PyErr_NoMemory();
        return NULL;
    }
    PyObject_GC_Track(row);
    return row;
}

static PyObject *counts_list(const long long *buckets, Py_ssize_t nb) {
    PyObject *list = PyList_New(nb);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < nb; i++) {
        PyObject *n = PyLong_FromLongLong(buckets[i]);
        if (n == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, n);
    }
    return list;
}

/* the row in metrics.PyMeter's layout: [count, request bytes, response bytes, duration sum,
   counts per bucket, exemplars or None(, {server or (server, origin): [sum, counts]})] */
static PyObject *row_list(Row *row, int rich) {
    PyObject *out = PyList_New(rich ? 7 : 6);
    if (out == NULL)
        return NULL;
    PyList_SET_ITEM(out, 0, PyLong_FromLongLong(row->count));
    PyList_SET_ITEM(out, 1, PyLong_FromLongLong(row->req));
    PyList_SET_ITEM(out, 2, PyLong_FromLongLong(row->resp));
    PyList_SET_ITEM(out, 3, PyFloat_FromDouble(row->total));
    PyList_SET_ITEM(out, 4, counts_list(row->buckets, row->nb));
    PyList_SET_ITEM(out, 5, row->exemplars ? PyList_GetSlice(row->exemplars, 0, row->nb)
                                           : Py_NewRef(Py_None));
    if (rich) {
        PyObject *clients = PyDict_New();
        PyList_SET_ITEM(out, 6, clients);
        for (Py_ssize_t i = 0; clients != NULL && i < row->nclients; i++) {
            Client *c = &row->clients[i];
            PyObject *key = c->origin ? PyTuple_Pack(2, c->server, c->origin)
                                      : Py_NewRef(c->server);
            PyObject *counts = counts_list(c->buckets, row->nb);
            PyObject *entry = Py_BuildValue("[dN]", c->total, counts);
            int rc = key && entry ? PyDict_SetItem(clients, key, entry) : -1;
            Py_XDECREF(key);
            Py_XDECREF(entry);
            if (rc < 0) {
                Py_DECREF(out);
                return NULL;
            }
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(out); i++) {
        if (PyList_GET_ITEM(out, i) == NULL) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* ---- the meter ----------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *tables; /* the labelled tables the fold adds the rows to */
    PyObject *bounds; /* tuple of float: the buckets' upper bounds */
    PyObject *rows;   /* dict: key -> Row, since the last fold */
    PyObject *route;
    PyObject *scheme;
    /* the row of the last request with a three-part key, (status, method, protocol): most
       requests of a router repeat it, and then cost no key and no lookup (cleared by take) */
    PyObject *last_status, *last_method;
    Row *last_row;
    double *bound; /* the bounds as doubles */
    Py_ssize_t nbounds;
    int rich;
    PyObject *keep;     /* tracing.keep: the tracer's keep(ex), or NULL */
    int keep_errors;    /* keep a failed unsampled exchange */
    double keep_slower; /* keep an unsampled exchange slower than this (seconds; 0: off) */
} Meter;

static int Meter_init(Meter *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"tables", "bounds", "rich", "route", "scheme", NULL};
    PyObject *tables, *bounds, *route = NULL, *scheme = NULL;
    int rich = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!|pUU", kw, &tables, &PyTuple_Type, &bounds,
                                     &rich, &route, &scheme))
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(bounds);
    double *bound = PyMem_Malloc(sizeof(double) * (n ? n : 1));
    if (bound == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        bound[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
        if (bound[i] == -1.0 && PyErr_Occurred()) {
            PyMem_Free(bound);
            return -1;
        }
        if (i && !(bound[i] > bound[i - 1])) {
            PyMem_Free(bound);
            PyErr_SetString(PyExc_ValueError, "Meter: bounds must increase");
            return -1;
        }
    }
    PyObject *rows = PyDict_New();
    if (rows == NULL) {
        PyMem_Free(bound);
        return -1;
    }
    PyMem_Free(self->bound);
    self->bound = bound;
    self->nbounds = n;
    self->rich = rich;
    Py_XSETREF(self->rows, rows);
    Py_CLEAR(self->last_row);
    Py_XSETREF(self->tables, Py_NewRef(tables));
    Py_XSETREF(self->bounds, Py_NewRef(bounds));
    Py_XSETREF(self->route, route ? Py_NewRef(route) : PyUnicode_FromString(""));
    Py_XSETREF(self->scheme, scheme ? Py_NewRef(scheme) : PyUnicode_FromString("http"));
    return self->route && self->scheme ? 0 : -1;
}

static int Meter_traverse(Meter *self, visitproc visit, void *arg) {
    Py_VISIT(self->tables);
    Py_VISIT(self->bounds);
    Py_VISIT(self->rows);
    Py_VISIT(self->route);
    Py_VISIT(self->scheme);
    Py_VISIT(self->last_status);
    Py_VISIT(self->last_method);
    Py_VISIT(self->last_row);
    Py_VISIT(self->keep);
    return 0;
}

static int Meter_clear(Meter *self) {
    Py_CLEAR(self->tables);
    Py_CLEAR(self->bounds);
    Py_CLEAR(self->rows);
    Py_CLEAR(self->route);
    Py_CLEAR(self->scheme);
    Py_CLEAR(self->last_status);
    Py_CLEAR(self->last_method);
    Py_CLEAR(self->last_row);
    Py_CLEAR(self->keep);
    return 0;
}

static void Meter_dealloc(Meter *self) {
    PyObject_GC_UnTrack(self);
    Meter_clear(self);
    PyMem_Free(self->bound);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* bisect_left(bounds, v) */
static Py_ssize_t bucket(const Meter *m, double v) {
    Py_ssize_t lo = 0, hi = m->nbounds;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (m->bound[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* a == b for the key's status (an int) and method (a str): the same object, or equal exact
   values (a status above 256 and a decoded method are new objects each request) */
static int same(PyObject *a, PyObject *b) {
    if (a == b)
        return 1;
    if (a == NULL || b == NULL)
        return 0;
    if (PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b))
        return PyUnicode_GET_LENGTH(a) == PyUnicode_GET_LENGTH(b) && PyUnicode_Compare(a, b) == 0;
    if (PyLong_CheckExact(a) && PyLong_CheckExact(b)) {
        int over_a, over_b;
        long long x = PyLong_AsLongLongAndOverflow(a, &over_a);
        long long y = PyLong_AsLongLongAndOverflow(b, &over_b);
        return !over_a && !over_b && x == y && !(x == -1 && PyErr_Occurred());
    }
    return 0;
}

/* a new reference to o.<name>: read at the slot's offset, inline, when the cache knows it */
static inline __attribute__((always_inline)) PyObject *get(PyObject *o, int name) {
    PyObject *v = slot_peek(&slots[name], o, names[name]);
    return v != NULL ? Py_NewRef(v) : slot_get(&slots[name], o, names[name]);
}

/* the truth of a bool, a str or an int without a call for them (else PyObject_IsTrue) */
static inline int truth(PyObject *v) {
    if (v == Py_True)
        return 1;
    if (v == Py_False || v == Py_None)
        return 0;
    if (PyUnicode_CheckExact(v))
        return PyUnicode_GET_LENGTH(v) != 0;
    if (PyLong_CheckExact(v))
        return Py_SIZE(v) != 0;
    return PyObject_IsTrue(v);
}

/* a new reference to o.<name>, or None when it was never set (an attribute set only where
   it applies, such as a gRPC call's status) */
static PyObject *get_or_none(PyObject *o, int name) {
    SlotCache *c = &slots[name];
    PyObject *v = slot_peek(c, o, names[name]);
    if (v != NULL || (c->type == Py_TYPE(o) && c->offset >= 0)) /* set, or a slot left empty */
        return Py_NewRef(v != NULL ? v : Py_None);
    v = PyObject_GetAttr(o, names[name]);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return Py_NewRef(Py_None);
    }
    return v;
}

static inline int number(PyObject *o, int name, double *out) {
    PyObject *v = slot_peek(&slots[name], o, names[name]);
    if (v != NULL && PyFloat_CheckExact(v)) { /* the exchange's times: read in place */
        *out = PyFloat_AS_DOUBLE(v);
        return 0;
    }
    v = v != NULL ? Py_NewRef(v) : slot_get(&slots[name], o, names[name]);
    if (v == NULL)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* *to += o.<name> (an int) */
static int add_attr(PyObject *o, int name, long long *to) {
    PyObject *v = get(o, name);
    if (v == NULL)
        return -1;
    long long n = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (__builtin_add_overflow(*to, n, to)) {
        PyErr_SetString(PyExc_OverflowError, "Meter: a count past 2**63 in one interval");
        return -1;
    }
    return 0;
}

/* the backend attempt's duration, counted for its server (and the origin's status when it
   is not the exchange's) */
/* the bucket of v, looked up only when it is not the request's own (index) */
static inline Py_ssize_t bucket_near(const Meter *m, double v, Py_ssize_t index) {
    if ((index == m->nbounds || v <= m->bound[index]) && (index == 0 || m->bound[index - 1] < v))
        return index;
    return bucket(m, v);
}

static int client_attempt(Meter *m, Row *row, PyObject *ex, PyObject *status, double t1,
                          Py_ssize_t index) {
    PyObject *origin = get(ex, A_ORIGIN_STATUS), *server = origin ? get(ex, A_SERVER) : NULL;
    int rc = -1;
    double t0;
    if (server == NULL || number(ex, A_ORIGIN_T0, &t0) < 0)
        goto done;
    int eq = same(origin, status) ? 1 : PyObject_RichCompareBool(origin, status, Py_EQ);
    if (eq < 0)
        goto done;
    int own = !eq; /* keyed (server, origin status), as the reference keys it */
    Client *c = NULL;
    for (Py_ssize_t i = 0; i < row->nclients; i++) {
        Client *x = &row->clients[i];
        if (x->server != server || (x->origin == NULL) != !own)
            continue;
        int match = own ? (same(x->origin, origin) ? 1
                                                   : PyObject_RichCompareBool(x->origin, origin, Py_EQ))
                        : 1;
        if (match < 0)
            goto done;
        if (match) {
            c = x;
            break;
        }
    }
    if (c == NULL) {
        if (row->nclients == row->cap) {
            Py_ssize_t cap = row->cap ? 2 * row->cap : 4;
            Client *more = PyMem_Realloc(row->clients, cap * sizeof(Client));
            if (more == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            row->clients = more;
            row->cap = cap;
        }
        long long *buckets = PyMem_Calloc(row->nb, sizeof(long long));
        if (buckets == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        c = &row->clients[row->nclients++];
        c->server = Py_NewRef(server);
        c->origin = own ? Py_NewRef(origin) : NULL;
        c->total = 0.0;
        c->buckets = buckets;
    }
    double v = t1 - t0;
    c->total += v;
    c->buckets[bucket_near(m, v, index)]++;
    rc = 0;
done:
    Py_XDECREF(origin);
    Py_XDECREF(server);
    return rc;
}

/* 1: an unsampled exchange the tracer keeps (failed, or slower than keep_slower), 0: not, -1:
   an error; as _context.Keeper decides */
static int keep_wanted(Meter *self, PyObject *ex, PyObject *status, double duration) {
    if (self->keep_errors) {
        /* the status: an int of one digit read in place (the common case), else converted */
        long code = PyLong_CheckExact(status) && Py_SIZE(status) == 1
                        ? (long)((PyLongObject *)status)->ob_digit[0]
                        : PyLong_AsLong(status);
        if (code == -1 && PyErr_Occurred())
            return -1;
        if (code >= 500)
            return 1;
        /* the error kind: "" for none, read at its slot without a reference when it is one */
        PyObject *error = slot_peek(&slots[A_ERROR_TYPE], ex, names[A_ERROR_TYPE]);
        if (error != NULL && PyUnicode_CheckExact(error)) {
            if (PyUnicode_GET_LENGTH(error))
                return 1;
        } else {
            if ((error = get(ex, A_ERROR_TYPE)) == NULL)
                return -1;
            int failed = PyObject_IsTrue(error);
            Py_DECREF(error);
            if (failed != 0)
                return failed;
        }
    }
    return self->keep_slower > 0 && duration > self->keep_slower;
}

/* an unsampled exchange that keep_wanted wants: to the tracer's keep */
static int keep_if_wanted(Meter *self, PyObject *ex, PyObject *status, double duration) {
    int wanted = keep_wanted(self, ex, status, duration);
    if (wanted <= 0)
        return wanted;
    PyObject *kept = PyObject_CallOneArg(self->keep, ex);
    if (kept == NULL)
        return -1;
    Py_DECREF(kept);
    return 0;
}

/* the same when the trace is not read yet: traced, not sampled, and wanted */
static int keep_unsampled(Meter *self, PyObject *ex, PyObject *status, double duration) {
    PyObject *trace = get(ex, A_TRACE);
    if (trace == NULL)
        return -1;
    int on = 1;
    if (trace != Py_None) {
        PyObject *sampled = get(trace, A_SAMPLED);
        on = sampled ? truth(sampled) : -1;
        Py_XDECREF(sampled);
    }
    Py_DECREF(trace);
    if (on != 0)
        return on < 0 ? -1 : 0;
    return keep_if_wanted(self, ex, status, duration);
}

static PyObject *Meter_finish(Meter *self, PyObject *ex) {
    PyObject *status = NULL, *method = NULL, *key = NULL, *error = NULL, *http10 = NULL;
    PyObject *trace = NULL, *sampled = NULL, *attempts = NULL, *out = NULL, *grpc = NULL;
    PyObject *down = NULL, *version = NULL;
    double t0, t1;
    if (number(ex, A_T0, &t0) < 0 || number(ex, A_T1, &t1) < 0)
        return NULL;
    double duration = t1 - t0;
    status = get(ex, A_STATUS);
    method = status ? get(ex, A_METHOD) : NULL;
    if (method == NULL)
        goto done;
    Py_ssize_t index = -1;
    Row *row = NULL; /* borrowed */
    int websocket = PyObject_RichCompareBool(status, i101, Py_EQ);
    if (websocket < 0)
        goto done;
    if (websocket) {
        key = PyTuple_Pack(3, i101, method, s_websocket);
    } else {
        /* a gRPC call's status (None: not one), as Traefik counts it: protocol "grpc", its
           gRPC status as the code (and, rich, its HTTP status last, for the OTLP histogram) */
        grpc = get_or_none(ex, A_GRPC);
        if (grpc == NULL)
            goto done;
        int longer = 0;
        if (self->rich) {
            /* the error kind and network.protocol.version: "1.0" for an HTTP/1.0 request,
               else its connection's ("1.1", "2" for an HTTP/2 stream) */
            error = get(ex, A_ERROR_TYPE);
            http10 = error ? get(ex, A_HTTP10) : NULL;
            if (http10 == NULL)
                goto done;
            int e = truth(error), h = truth(http10);
            if (e < 0 || h < 0)
                goto done;
            if (h) {
                version = Py_NewRef(s_v10);
            } else {
                down = get(ex, A_DOWN);
                version = down ? get(down, A_VERSION) : NULL;
                if (version == NULL)
                    goto done;
            }
            int plain = version == s_v11 ||
                                (PyUnicode_CheckExact(version) && PyUnicode_IS_COMPACT_ASCII(version) &&
                                 PyUnicode_GET_LENGTH(version) == 3 &&
                                 memcmp(PyUnicode_DATA(version), "1.1", 3) == 0)
                            ? 1
                            : PyObject_RichCompareBool(version, s_v11, Py_EQ);
            if (plain < 0)
                goto done;
            longer = e || !plain;
        }
        index = bucket(self, duration);
        if (grpc != Py_None)
            key = self->rich ? PyTuple_Pack(6, grpc, method, s_grpc, error, version, status)
                             : PyTuple_Pack(3, grpc, method, s_grpc);
        else if (longer)
            key = PyTuple_Pack(5, status, method, s_http, error, version);
        else if (self->last_row && same(status, self->last_status) &&
                 same(method, self->last_method))
            row = self->last_row;
        else
            key = PyTuple_Pack(3, status, method, s_http);
    }
    if (row == NULL) {
        if (key == NULL)
            goto done;
        row = (Row *)PyDict_GetItemWithError(self->rows, key);
        if (row == NULL) {
            if (PyErr_Occurred())
                goto done;
            row = new_row(self->nbounds + 1);
            if (row == NULL)
                goto done;
            int set = PyDict_SetItem(self->rows, key, (PyObject *)row);
            Py_DECREF(row); /* the dict holds it */
            if (set < 0)
                goto done;
        }
        if (PyTuple_GET_SIZE(key) == 3 && !websocket && grpc == Py_None) {
            Py_XSETREF(self->last_status, Py_NewRef(status));
            Py_XSETREF(self->last_method, Py_NewRef(method));
            Py_XSETREF(self->last_row, (Row *)Py_NewRef(row));
        }
    }
    row->count++;
    if (add_attr(ex, A_REQ_BYTES, &row->req) < 0 || add_attr(ex, A_RESP_BYTES, &row->resp) < 0)
        goto done;
    if (index >= 0) {
        row->total += duration;
        row->buckets[index]++;
        trace = get(ex, A_TRACE);
        if (trace == NULL)
            goto done;
        if (trace != Py_None) {
            sampled = get(trace, A_SAMPLED);
            int on = sampled ? truth(sampled) : -1;
            if (on < 0)
                goto done;
            if (!on && self->keep != NULL && keep_if_wanted(self, ex, status, duration) < 0)
                goto done;

            if (on) { /* the last sampled request of its bucket: (trace, seconds, end) */
                if (row->exemplars == NULL) {
                    row->exemplars = PyList_New(row->nb);
                    if (row->exemplars == NULL)
                        goto done;
                    for (Py_ssize_t i = 0; i < row->nb; i++)
                        PyList_SET_ITEM(row->exemplars, i, Py_NewRef(Py_None));
                }
                PyObject *entry = Py_BuildValue("(Odd)", trace, duration, t1);
                if (entry == NULL)
                    goto done;
                PyList_SetItem(row->exemplars, index, entry); /* steals */
            }
        }
        if (self->rich) {
            attempts = get(ex, A_ATTEMPTS);
            int any = attempts ? truth(attempts) : -1;
            if (any < 0 || (any && client_attempt(self, row, ex, status, t1, index) < 0))
                goto done;
        }
    }
    if (index < 0 && self->keep != NULL && keep_unsampled(self, ex, status, duration) < 0)
        goto done; /* a WebSocket's end: not read above */
    out = Py_NewRef(Py_None);
done:
    Py_XDECREF(status);
    Py_XDECREF(method);
    Py_XDECREF(key);
    Py_XDECREF(error);
    Py_XDECREF(http10);
    Py_XDECREF(trace);
    Py_XDECREF(sampled);
    Py_XDECREF(attempts);
    Py_XDECREF(grpc);
    Py_XDECREF(down);
    Py_XDECREF(version);
    return out;
}

/* with metrics.otlp on, the exchange notes when its backend attempt starts (origin_t0) */
static PyObject *Meter_start(Meter *self, PyObject *ex) {
    if (self->rich && slot_set(&slots[A_TIMED], ex, names[A_TIMED], one) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *rows_lists(Meter *self) {
    PyObject *out = PyDict_New(), *key, *value;
    Py_ssize_t pos = 0;
    while (out != NULL && PyDict_Next(self->rows, &pos, &key, &value)) {
        PyObject *row = row_list((Row *)value, self->rich);
        if (row == NULL || PyDict_SetItem(out, key, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
    }
    return out;
}

/* the rows since the last fold, as lists; the meter starts new ones */
static PyObject *Meter_take(Meter *self, PyObject *unused) {
    if (PyDict_GET_SIZE(self->rows) == 0)
        return PyDict_New();
    PyObject *out = rows_lists(self);
    if (out == NULL)
        return NULL;
    PyObject *fresh = PyDict_New();
    if (fresh == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    Py_SETREF(self->rows, fresh);
    Py_CLEAR(self->last_row);
    return out;
}

static PyObject *Meter_snapshot(Meter *self, PyObject *unused) { return rows_lists(self); }

/* keeping(keep, errors, slower): end unsampled exchanges as the tracer's Keeper would */
static PyObject *Meter_keeping(Meter *self, PyObject *args) {
    PyObject *keep;
    int errors;
    double slower;
    if (!PyArg_ParseTuple(args, "Opd", &keep, &errors, &slower))
        return NULL;
    if (keep == Py_None) /* keeping off (a later configuration) */
        Py_CLEAR(self->keep);
    else
        Py_XSETREF(self->keep, Py_NewRef(keep));
    self->keep_errors = errors;
    self->keep_slower = slower;
    Py_RETURN_NONE;
}

static PyMethodDef Meter_methods[] = {
    {"start", (PyCFunction)Meter_start, METH_O, "The exchange's start (times its attempt when rich)."},
    {"finish", (PyCFunction)Meter_finish, METH_O, "Add the ended exchange to its row."},
    {"take", (PyCFunction)Meter_take, METH_NOARGS, "The rows since the last fold; new ones start."},
    {"snapshot", (PyCFunction)Meter_snapshot, METH_NOARGS, "The rows so far, as take gives them."},
    {"keeping", (PyCFunction)Meter_keeping, METH_VARARGS,
     "keeping(keep, errors, slower): hand a failed or slow unsampled exchange to keep(ex) "
     "(keep None: no more)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Meter_members[] = {
    {"tables", T_OBJECT_EX, offsetof(Meter, tables), READONLY, NULL},
    {"bounds", T_OBJECT_EX, offsetof(Meter, bounds), READONLY, NULL},
    {"route", T_OBJECT_EX, offsetof(Meter, route), READONLY, NULL},
    {"scheme", T_OBJECT_EX, offsetof(Meter, scheme), READONLY, NULL},
    {"rich", T_BOOL, offsetof(Meter, rich), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *Meter_nbuckets(Meter *self, void *closure) {
    return PyLong_FromSsize_t(self->nbounds + 1);
}

static PyGetSetDef Meter_getset[] = {
    {"nbuckets", (getter)Meter_nbuckets, NULL, "len(bounds) + 1", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MeterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwire.telemetry._meter.Meter",
    .tp_basicsize = sizeof(Meter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Meter(tables, bounds, rich=False, route='', scheme='http'): a router's metrics "
              "observer, its per-request part (metrics.PyMeter, compiled).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Meter_init,
    .tp_traverse = (traverseproc)Meter_traverse,
    .tp_clear = (inquiry)Meter_clear,
    .tp_dealloc = (destructor)Meter_dealloc,
    .tp_methods = Meter_methods,
    .tp_members = Meter_members,
    .tp_getset = Meter_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hopwire.telemetry._meter",
    "The metrics observer's per-request part in C (see hopwire.telemetry.metrics).", -1, NULL,
};

PyMODINIT_FUNC PyInit__meter(void) {
    for (int i = 0; i < A_COUNT; i++) {
        if (names[i] == NULL && (names[i] = PyUnicode_InternFromString(NAMES[i])) == NULL)
            return NULL;
    }
    if ((s_http == NULL && (s_http = PyUnicode_InternFromString("http")) == NULL) ||
        (s_websocket == NULL && (s_websocket = PyUnicode_InternFromString("websocket")) == NULL) ||
        (s_grpc == NULL && (s_grpc = PyUnicode_InternFromString("grpc")) == NULL) ||
        (s_v10 == NULL && (s_v10 = PyUnicode_InternFromString("1.0")) == NULL) ||
        (s_v11 == NULL && (s_v11 = PyUnicode_InternFromString("1.1")) == NULL) ||
        (one == NULL && (one = PyLong_FromLong(1)) == NULL) ||
        (i101 == NULL && (i101 = PyLong_FromLong(101)) == NULL))
        return NULL;
    if (PyType_Ready(&RowType) < 0 || PyType_Ready(&MeterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Meter", (PyObject *)&MeterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
