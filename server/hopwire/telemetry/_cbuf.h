/* What the compiled telemetry parts share (_otlp.c, _accesslog.c, _context.c): a growable
 * byte buffer with protobuf varints, and reads of an object's __slots__ members at their
 * offsets.  Header-only: each extension is its own shared object. */
#ifndef HOPWIRE_CBUF_H
#define HOPWIRE_CBUF_H

#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int buf_grow(Buf *b, Py_ssize_t more) {
    Py_ssize_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + more)
        cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

/* room for ``more`` bytes: every put_* below writes within what was reserved */
static inline int buf_reserve(Buf *b, Py_ssize_t more) {
    return b->len + more <= b->cap ? 0 : buf_grow(b, more);
}

static inline int vsize(uint64_t n) {
    int size = 1;
    while (n > 0x7F) {
        n >>= 7;
        size++;
    }
    return size;
}

static inline void put_varint(Buf *b, uint64_t n) {
    while (n > 0x7F) {
        b->data[b->len++] = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    b->data[b->len++] = (char)n;
}

static inline void put_raw(Buf *b, const char *s, Py_ssize_t n) {
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static inline void put_byte(Buf *b, int c) { b->data[b->len++] = (char)c; }

/* Where an attribute name was last found as a __slots__ member: its type, the type's version
 * and the offset (-1: read with PyObject_GetAttr: not a slot, a property, a class attribute).
 * A read of an object of the same type reads the slot directly (an attribute lookup costs
 * ~10 times more). */
typedef struct {
    PyTypeObject *type;
    unsigned int version;
    Py_ssize_t offset;
    int writable; /* the member may be set (not READONLY) */
} SlotCache;

static void slot_learn(SlotCache *c, PyTypeObject *type, PyObject *name) {
    c->type = NULL;
    if (!PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG))
        return;
    c->type = type;
    c->version = type->tp_version_tag;
    c->offset = -1;
    PyObject *descr = _PyType_Lookup(type, name); /* borrowed */
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type))
        return;
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type == T_OBJECT_EX && !(member->flags & PY_AUDIT_READ)) {
        c->offset = member->offset;
        c->writable = !(member->flags & READONLY);
    }
}

/* o.<name> read at the slot's offset, borrowed: NULL (no exception) when it is not a slot of
   o's type or the slot is empty, and then it is read the generic way */
static inline PyObject *slot_peek(SlotCache *c, PyObject *o, PyObject *name) {
    PyTypeObject *type = Py_TYPE(o);
    if (c->type != type || c->version != type->tp_version_tag)
        slot_learn(c, type, name);
    return c->type == type && c->offset >= 0 ? *(PyObject **)((char *)o + c->offset) : NULL;
}

/* a new reference to o.<name> (NULL and an exception as Python raises it) */
static PyObject *slot_get(SlotCache *c, PyObject *o, PyObject *name) {
    PyTypeObject *type = Py_TYPE(o);
    if (c->type != type || c->version != type->tp_version_tag)
        slot_learn(c, type, name);
    if (c->type == type && c->offset >= 0) {
        PyObject *v = *(PyObject **)((char *)o + c->offset);
        if (v != NULL)
            return Py_NewRef(v);
    } /* not a slot, or an empty one (AttributeError as Python raises it) */
    return PyObject_GetAttr(o, name);
}

/* o.<name> = v, at the slot's offset when it is one (else as Python sets it) */
static int slot_set(SlotCache *c, PyObject *o, PyObject *name, PyObject *v) {
    PyTypeObject *type = Py_TYPE(o);
    if (c->type != type || c->version != type->tp_version_tag)
        slot_learn(c, type, name);
    if (c->type == type && c->offset >= 0 && c->writable) {
        PyObject **at = (PyObject **)((char *)o + c->offset);
        Py_XSETREF(*at, Py_NewRef(v));
        return 0;
    }
    return PyObject_SetAttr(o, name, v);
}

#endif
