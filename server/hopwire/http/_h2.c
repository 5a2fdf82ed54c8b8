/* HTTP/2 framing for hopwire: a thin binding to libnghttp2 (RFC 9113).
 *
 * One Session per client connection (server side).  libnghttp2 does the framing, HPACK, flow
 * control, the RFC 9113 §8.2 checks on every request field (pseudo-header rules, no
 * connection-specific field, lowercase names, no CR/LF/NUL in a value, Content-Length against
 * the DATA received) and the flood limits of its version (SETTINGS, PING and RST_STREAM
 * answers, reset streams, CONTINUATION).  This file moves bytes and calls the connection
 * (hopwire.http.h2.H2Connection) back with whole requests:
 *
 *     handler.h2_request(stream_id, method, path, scheme, authority, fields, flags, size)
 *                                                          a request's head: its pseudo-header
 *                                                          fields apart, [(name, value)],
 *                                                          F_* flags, its size
 *     handler.h2_data(stream_id, data)                     a piece of its body
 *     handler.h2_end(stream_id)                            its end (END_STREAM)
 *     handler.h2_trailers(stream_id, fields)               its trailer fields, [(name, value)]
 *     handler.h2_closed(stream_id, error_code)             the stream is gone (either side)
 *
 * A client Session (``client=True``: a backend connection, hopwire.http.h2up.H2Backend) sends
 * requests (``request_head`` reads the head the exchange wrote for HTTP/1.1) and calls back
 * with the answers: h2_response(stream_id, status, head, end) with the head written as
 * HTTP/1.1, h2_data, h2_trailers, h2_end, h2_closed, h2_goaway(last_stream_id, code) and
 * h2_pong() (the ACK of ``ping``).
 *
 * Responses go the other way: ``respond`` takes the head the exchange wrote for HTTP/1.1 (a
 * status line and field lines: the exchange's one response path) and submits it as HEADERS,
 * minus the connection-specific fields; ``send`` queues body bytes for the stream, which
 * libnghttp2 takes as the client's windows allow; ``end`` ends it (with trailers or not).
 * The bytes to write are taken with ``pending``.  python-hyper's h2 is the reference the
 * tests hold this to; it is never the runtime.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <nghttp2/nghttp2.h>
#include <string.h>

static PyObject *H2Error;
#define F_END 1     /* END_STREAM on the request's HEADERS: no body */
#define F_HOST 2    /* a host field beside :authority */
#define F_LENGTH 4  /* a content-length field */
#define F_COOKIES 8 /* more than one cookie field (RFC 9113 §8.2.3: joined for HTTP/1.1) */
static PyObject *s_request, *s_data, *s_end, *s_closed, *s_response, *s_trailers, *s_goaway,
    *s_pong;

/* what is queued for a stream's DATA frames; freed when the stream closes */
typedef struct Out {
    char *data;
    size_t len, cap, at; /* bytes [at, len) are still to be framed */
    int ended;            /* no more body: EOF once drained */
    int deferred;         /* the data source said "later": resume on the next send */
    int watched;          /* the connection asked to hear when the queue falls low */
    nghttp2_nv *trailers; /* sent after the last DATA (NULL: none) */
    size_t ntrailers;
    char *trailer_block;  /* the names and values the trailers point into */
    int32_t id;           /* its stream */
    struct Out *prev, *next; /* every open queue of the session (freed with it) */
} Out;

typedef struct {
    PyObject_HEAD
    nghttp2_session *session;
    PyObject *handler;
    PyObject *fields;  /* the head being received: [(name, value)] */
    int32_t fields_stream;
    size_t fields_bytes;
    /* the request's pseudo-header fields (:method, :path, :scheme, :authority), set apart
       from its fields, and what the connection needs to know of those */
    PyObject *pseudo[4];
    int field_flags;  /* F_HOST | F_LENGTH | F_COOKIES */
    Py_ssize_t head_size; /* names and values, +4 each (an HTTP/1.1 head's accounting) */
    size_t max_field_bytes;
    size_t low_water;
    int32_t *drained; /* streams whose queue fell under low_water */
    size_t ndrained, capdrained;
    int failed; /* a Python callback raised: the exception is set */
    int client; /* the client side of a backend connection (hopwire.http.h2up) */
    /* client side: the head being received as HTTP/1.1 field lines ("name: value\r\n") */
    char *hbuf;
    size_t hlen, hcap;
    int has_length; /* ... with a content-length field */
    Out *outs;  /* the open queues */
    /* counters, read by the connection for its metrics */
    unsigned long long invalid_frames, invalid_fields, resets_in, oversized_heads;
} Session;

static void free_out(Out *o) {
    if (o == NULL)
        return;
    if (o->prev != NULL)
        o->prev->next = o->next;
    if (o->next != NULL)
        o->next->prev = o->prev;
    PyMem_RawFree(o->data);
    PyMem_RawFree(o->trailers);
    PyMem_RawFree(o->trailer_block);
    PyMem_RawFree(o);
}

static void drop_out(Session *s, Out *o) {
    if (o == NULL)
        return;
    if (s->outs == o)
        s->outs = o->next;
    free_out(o);
}

/* the session and every queue still open (nghttp2_session_del calls no stream callback) */
static void drop_session(Session *s) {
    if (s->session == NULL)
        return;
    nghttp2_session *session = s->session;
    s->session = NULL;
    nghttp2_session_del(session);
    while (s->outs != NULL)
        drop_out(s, s->outs);
}

/* a new queue for a stream's body, on the session's list (NULL: no memory, raised) */
static Out *new_out(Session *self) {
    Out *o = PyMem_RawCalloc(1, sizeof(Out));
    if (o == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    o->next = self->outs;
    if (self->outs != NULL)
        self->outs->prev = o;
    self->outs = o;
    return o;
}

/* ---- callbacks from libnghttp2 ------------------------------------------------------------ */

static int call_handler(Session *s, PyObject *name, PyObject *args) {
    if (args == NULL) {
        s->failed = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *r = PyObject_CallMethodObjArgs(s->handler, name, n > 0 ? PyTuple_GET_ITEM(args, 0) : NULL,
                                             n > 1 ? PyTuple_GET_ITEM(args, 1) : NULL,
                                             n > 2 ? PyTuple_GET_ITEM(args, 2) : NULL, NULL);
    Py_DECREF(args);
    if (r == NULL) {
        s->failed = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    Py_DECREF(r);
    return 0;
}

/* the handler's method with the four arguments of ``args`` (a new tuple, or NULL) */
static int call_handler4(Session *s, PyObject *name, PyObject *args) {
    if (args == NULL) {
        s->failed = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    PyObject *r = PyObject_CallMethodObjArgs(s->handler, name, PyTuple_GET_ITEM(args, 0),
                                             PyTuple_GET_ITEM(args, 1), PyTuple_GET_ITEM(args, 2),
                                             PyTuple_GET_ITEM(args, 3), NULL);
    Py_DECREF(args);
    if (r == NULL) {
        s->failed = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    Py_DECREF(r);
    return 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    Session *s = user;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    Py_XSETREF(s->fields, PyList_New(0));
    if (s->fields == NULL) {
        s->failed = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s->fields_stream = frame->hd.stream_id;
    s->fields_bytes = 0;
    s->hlen = 0;
    s->has_length = 0;
    s->field_flags = 0;
    s->head_size = 0;
    for (int i = 0; i < 4; i++)
        Py_CLEAR(s->pseudo[i]);
    return 0;
}

/* one "name: value\r\n" line more in the head being received; 0: no memory */
static int hbuf_line(Session *s, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen) {
    size_t need = s->hlen + nlen + vlen + 4;
    if (need > s->hcap) {
        size_t cap = s->hcap ? s->hcap : 1024;
        while (cap < need)
            cap *= 2;
        char *more = PyMem_RawRealloc(s->hbuf, cap);
        if (more == NULL)
            return 0;
        s->hbuf = more;
        s->hcap = cap;
    }
    char *at = s->hbuf + s->hlen;
    memcpy(at, name, nlen);
    at[nlen] = ':';
    at[nlen + 1] = ' ';
    memcpy(at + nlen + 2, value, vlen);
    at[nlen + 2 + vlen] = '\r';
    at[nlen + 3 + vlen] = '\n';
    s->hlen = need;
    return 1;
}

/* the lines of hbuf as [(name, value)] (a client's trailers) */
static PyObject *hbuf_fields(Session *s) {
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < s->hlen;) {
        const char *line = s->hbuf + i;
        const char *eol = memchr(line, '\r', s->hlen - i);
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        PyObject *pair = Py_BuildValue("(y#y#)", line, (Py_ssize_t)(colon - line), colon + 2,
                                       (Py_ssize_t)(eol - colon - 2));
        if (pair == NULL || PyList_Append(list, pair) < 0)
            Py_CLEAR(list);
        Py_XDECREF(pair);
        i = (size_t)(eol - s->hbuf) + 2;
    }
    return list;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
    Session *s = user;
    if (s->fields == NULL || frame->hd.stream_id != s->fields_stream)
        return 0;
    s->fields_bytes += namelen + valuelen + 32; /* RFC 9113 §6.5.2's accounting */
    if (s->fields_bytes > s->max_field_bytes) {
        s->oversized_heads++;
        Py_CLEAR(s->fields);
        /* the stream is reset; the connection goes on */
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->head_size += (Py_ssize_t)(namelen + valuelen + 4);
    if (namelen > 1 && name[0] == ':') { /* nghttp2 has checked their names and order */
        int i = s->client ? (namelen == 7 && memcmp(name, ":status", 7) == 0 ? 0 : -1)
                : namelen == 7 && memcmp(name, ":method", 7) == 0   ? 0
                : namelen == 5 && memcmp(name, ":path", 5) == 0   ? 1
                : namelen == 7 && memcmp(name, ":scheme", 7) == 0 ? 2
                : namelen == 10 && memcmp(name, ":authority", 10) == 0 ? 3
                                                                   : -1;
        if (i >= 0) {
            Py_XSETREF(s->pseudo[i], PyBytes_FromStringAndSize((const char *)value, (Py_ssize_t)valuelen));
            if (s->pseudo[i] == NULL) {
                s->failed = 1;
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            }
        }
        return 0;
    }
    if (s->client) { /* a response's field lines, as HTTP/1.1 writes them */
        if (!hbuf_line(s, name, namelen, value, valuelen)) {
            s->failed = 1;
            PyErr_NoMemory();
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        if (namelen == 14 && memcmp(name, "content-length", 14) == 0)
            s->has_length = 1;
        return 0;
    }
    if (namelen == 4 && memcmp(name, "host", 4) == 0)
        s->field_flags |= F_HOST;
    else if (namelen == 14 && memcmp(name, "content-length", 14) == 0)
        s->field_flags |= F_LENGTH;
    else if (namelen == 6 && memcmp(name, "cookie", 6) == 0) {
        if (s->field_flags & 16)
            s->field_flags |= F_COOKIES;
        s->field_flags |= 16; /* one cookie seen */
    }
    PyObject *pair = Py_BuildValue("(y#y#)", (const char *)name, (Py_ssize_t)namelen,
                                   (const char *)value, (Py_ssize_t)valuelen);
    if (pair == NULL || PyList_Append(s->fields, pair) < 0) {
        Py_XDECREF(pair);
        s->failed = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    Py_DECREF(pair);
    return 0;
}

/* a HEADERS frame other than a request's is complete: a response head (client side: it has
   a :status; an interim 1xx, then the final one) or trailers (either side); ``end``:
   END_STREAM came with it */
static int headers_done(Session *s, int32_t id, int end) {
    PyObject *fields = s->fields;
    s->fields = NULL;
    PyObject *status = s->client ? s->pseudo[0] : NULL;
    int rv;
    if (status != NULL) {
        /* h2_response(stream_id, status, head, end): the head as HTTP/1.1 writes it */
        long code = 0;
        const char *p = PyBytes_AS_STRING(status);
        Py_ssize_t n = PyBytes_GET_SIZE(status);
        for (Py_ssize_t i = 0; i < n && i < 4; i++)
            code = code * 10 + (p[i] >= '0' && p[i] <= '9' ? p[i] - '0' : 0);
        /* END_STREAM with the head (gRPC's Trailers-Only answer): a body of length 0, which
           an HTTP/2 client gets as one HEADERS frame again */
        int zero = end && code >= 200 && !s->has_length;
        size_t size = 15 + s->hlen + (zero ? 19 : 0) + 2;
        PyObject *head = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
        if (head == NULL) {
            Py_DECREF(fields);
            s->failed = 1;
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        char *at = PyBytes_AS_STRING(head);
        snprintf(at, 16, "HTTP/1.1 %03ld \r\n", code % 1000);
        memcpy(at + 15, s->hbuf ? s->hbuf : "", s->hlen);
        at += 15 + s->hlen;
        if (zero) {
            memcpy(at, "content-length: 0\r\n", 19);
            at += 19;
        }
        memcpy(at, "\r\n", 2);
        rv = call_handler4(s, s_response, Py_BuildValue("(ilNO)", id, code, head, end ? Py_True : Py_False));
        Py_CLEAR(s->pseudo[0]);
        Py_DECREF(fields);
        if (rv != 0 || !end)
            return rv;
    } else {
        /* trailers: h2_trailers(stream_id, fields), then the end of the stream's body */
        if (s->client) {
            Py_DECREF(fields);
            fields = hbuf_fields(s);
            if (fields == NULL) {
                s->failed = 1;
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            }
        }
        rv = call_handler(s, s_trailers, Py_BuildValue("(iO)", id, fields));
        Py_DECREF(fields);
        if (rv != 0)
            return rv;
    }
    return end ? call_handler(s, s_end, Py_BuildValue("(i)", id)) : 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    Session *s = user;
    int32_t id = frame->hd.stream_id;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST && s->fields != NULL &&
            id == s->fields_stream) {
            PyObject *fields = s->fields;
            s->fields = NULL;
            PyObject *empty = PyBytes_FromStringAndSize("", 0);
            PyObject *sid = PyLong_FromLong(id);
            PyObject *flags = PyLong_FromLong((s->field_flags & 15) | (end ? F_END : 0));
            PyObject *size = PyLong_FromSsize_t(s->head_size);
            PyObject *r = NULL;
            if (empty != NULL && sid != NULL && flags != NULL && size != NULL) {
                PyObject *p[4];
                for (int i = 0; i < 4; i++)
                    p[i] = s->pseudo[i] ? s->pseudo[i] : empty;
                /* h2_request(stream_id, method, path, scheme, authority, fields, flags, size) */
                r = PyObject_CallMethodObjArgs(s->handler, s_request, sid, p[0], p[1], p[2], p[3],
                                               fields, flags, size, NULL);
            }
            Py_DECREF(fields);
            Py_XDECREF(empty);
            Py_XDECREF(sid);
            Py_XDECREF(flags);
            Py_XDECREF(size);
            for (int i = 0; i < 4; i++)
                Py_CLEAR(s->pseudo[i]);
            if (r == NULL) {
                s->failed = 1;
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            }
            Py_DECREF(r);
            return 0;
        }
        if (s->fields == NULL || id != s->fields_stream) /* refused as it arrived */
            return 0;
        return headers_done(s, id, end);
    case NGHTTP2_DATA:
        if (end)
            return call_handler(s, s_end, Py_BuildValue("(i)", id));
        return 0;
    case NGHTTP2_RST_STREAM:
        s->resets_in++;
        return 0;
    case NGHTTP2_GOAWAY: /* client side: the backend takes no stream above last_stream_id */
        if (!s->client)
            return 0;
        return call_handler(s, s_goaway, Py_BuildValue("(iI)", frame->goaway.last_stream_id,
                                                        frame->goaway.error_code));
    case NGHTTP2_PING: /* client side: the answer to hopwire's PING (readIdleTimeout) */
        if (s->client && (frame->hd.flags & NGHTTP2_FLAG_ACK))
            return call_handler(s, s_pong, PyTuple_New(0));
        return 0;
    default:
        return 0;
    }
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user) {
    Session *s = user;
    /* the connection's window reopens at once: only the stream's waits for the exchange
       (consume), so that one stream held back never stalls the others */
    nghttp2_session_consume_connection(session, len);
    return call_handler(s, s_data, Py_BuildValue("(iy#)", stream_id, (const char *)data, (Py_ssize_t)len));
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user) {
    Session *s = user;
    Out *o = nghttp2_session_get_stream_user_data(session, stream_id);
    if (o != NULL) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        drop_out(s, o);
    }
    if (s->fields != NULL && s->fields_stream == stream_id)
        Py_CLEAR(s->fields);
    if (s->handler == NULL)
        return 0;
    return call_handler(s, s_closed, Py_BuildValue("(iI)", stream_id, error_code));
}

static int on_invalid_frame(nghttp2_session *session, const nghttp2_frame *frame, int lib_error,
                            void *user) {
    ((Session *)user)->invalid_frames++;
    return 0;
}

static int on_invalid_header(nghttp2_session *session, const nghttp2_frame *frame,
                             const uint8_t *name, size_t namelen, const uint8_t *value,
                             size_t valuelen, uint8_t flags, void *user) {
    ((Session *)user)->invalid_fields++;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset (RFC 9113 §8.2.1) */
}

/* the DATA of a stream: what its queue holds, as the windows allow */
static ssize_t read_out(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                        uint32_t *flags, nghttp2_data_source *source, void *user) {
    Session *s = user;
    Out *o = source->ptr;
    size_t have = o->len - o->at;
    if (have == 0 && !o->ended) {
        o->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = have < length ? have : length;
    memcpy(buf, o->data + o->at, n);
    o->at += n;
    if (o->at == o->len)
        o->at = o->len = 0;
    if (o->watched && o->len - o->at <= s->low_water) {
        o->watched = 0;
        if (s->ndrained == s->capdrained) {
            size_t cap = s->capdrained ? 2 * s->capdrained : 16;
            int32_t *more = PyMem_RawRealloc(s->drained, cap * sizeof(int32_t));
            if (more == NULL)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            s->drained = more;
            s->capdrained = cap;
        }
        s->drained[s->ndrained++] = stream_id;
    }
    if (o->len == o->at && o->ended) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (o->trailers != NULL) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            int rv = nghttp2_submit_trailer(session, stream_id, o->trailers, o->ntrailers);
            if (rv != 0)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    }
    return (ssize_t)n;
}

/* ---- the session ------------------------------------------------------------------------- */

static int Session_init(Session *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"handler", "max_concurrent_streams", "decoder_table_size",
                         "encoder_table_size", "initial_window", "max_field_bytes",
                         "low_water", "client", NULL};
    PyObject *handler;
    unsigned int streams = 250, decoder = 4096, encoder = 4096, window = 65535;
    Py_ssize_t max_field_bytes = 1 << 20, low_water = 16384;
    int client = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|IIIInnp", kw, &handler, &streams, &decoder,
                                     &encoder, &window, &max_field_bytes, &low_water, &client))
        return -1;
    if (self->session != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Session: already initialised");
        return -1;
    }
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) {
        PyErr_NoMemory();
        return -1;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
    nghttp2_session_callbacks_set_on_invalid_header_callback(cbs, on_invalid_header);
    /* the body's windows are reopened as the exchange forwards it (consume), so that a slow
       backend bounds what a client may send ahead */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, encoder);
    nghttp2_option_set_max_send_header_block_length(opt, 256 * 1024);
    nghttp2_session *session;
    int rv = client ? nghttp2_session_client_new2(&session, cbs, self, opt)
                    : nghttp2_session_server_new2(&session, cbs, self, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rv != 0) {
        PyErr_Format(H2Error, "nghttp2_session_new: %s", nghttp2_strerror(rv));
        return -1;
    }
    /* a client's first entry: no server push (it would have nothing to go to) */
    nghttp2_settings_entry iv[] = {
        client ? (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0}
               : (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, streams},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, decoder},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)max_field_bytes},
    };
    rv = nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    if (rv != 0) {
        nghttp2_session_del(session);
        PyErr_Format(H2Error, "nghttp2_submit_settings: %s", nghttp2_strerror(rv));
        return -1;
    }
    self->session = session;
    self->handler = Py_NewRef(handler);
    self->max_field_bytes = (size_t)max_field_bytes;
    self->low_water = (size_t)low_water;
    self->client = client;
    return 0;
}

static int Session_traverse(Session *self, visitproc visit, void *arg) {
    Py_VISIT(self->handler);
    Py_VISIT(self->fields);
    return 0;
}

static int Session_clear(Session *self) {
    Py_CLEAR(self->handler);
    Py_CLEAR(self->fields);
    for (int i = 0; i < 4; i++)
        Py_CLEAR(self->pseudo[i]);
    return 0;
}

static void Session_dealloc(Session *self) {
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->handler); /* first: no callback reaches Python from here */
    drop_session(self);
    Session_clear(self);
    PyMem_RawFree(self->drained);
    PyMem_RawFree(self->hbuf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(Session *self) {
    if (self->session == NULL || self->handler == NULL) {
        PyErr_SetString(H2Error, "Session: closed");
        return 0;
    }
    return 1;
}

/* receive(data): feed the client's bytes; the handler is called for what they complete */
static PyObject *Session_receive(Session *self, PyObject *arg) {
    Py_buffer view;
    if (!ready(self) || PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    self->failed = 0;
    ssize_t rv = nghttp2_session_mem_recv(self->session, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (self->failed) {
        if (!PyErr_Occurred())
            PyErr_SetString(H2Error, "a handler failed");
        return NULL;
    }
    if (rv < 0) {
        /* a connection error: nghttp2 has queued the GOAWAY; the caller writes it and closes */
        PyObject *exc = Py_BuildValue("(is)", (int)rv, nghttp2_strerror((int)rv));
        if (exc != NULL) {
            PyErr_SetObject(H2Error, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    Py_RETURN_NONE;
}

/* pending(): every byte libnghttp2 has to send now (b"" when none) */
static PyObject *Session_pending(Session *self, PyObject *unused) {
    if (!ready(self))
        return NULL;
    const uint8_t *chunk;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    self->failed = 0;
    for (;;) {
        ssize_t n = nghttp2_session_mem_send(self->session, &chunk);
        if (n < 0) {
            PyMem_RawFree(buf);
            if (self->failed && PyErr_Occurred())
                return NULL;
            PyErr_Format(H2Error, "nghttp2_session_mem_send: %s", nghttp2_strerror((int)n));
            return NULL;
        }
        if (n == 0)
            break;
        if (len + (size_t)n > cap) {
            size_t want = cap ? cap : 16384;
            while (want < len + (size_t)n)
                want *= 2;
            char *more = PyMem_RawRealloc(buf, want);
            if (more == NULL) {
                PyMem_RawFree(buf);
                return PyErr_NoMemory();
            }
            buf = more;
            cap = want;
        }
        memcpy(buf + len, chunk, (size_t)n);
        len += (size_t)n;
    }
    PyObject *out = PyBytes_FromStringAndSize(buf ? buf : "", (Py_ssize_t)len);
    PyMem_RawFree(buf);
    return out;
}

static int is_connection_field(const char *name, size_t n) {
    /* RFC 9113 §8.2.2: never in an HTTP/2 message (nor Content-Length's HTTP/1.1 twin,
       Transfer-Encoding) */
    static const char *const banned[] = {"connection", "keep-alive", "proxy-connection",
                                         "transfer-encoding", "upgrade", NULL};
    for (int i = 0; banned[i]; i++) {
        if (strlen(banned[i]) == n && strncasecmp(banned[i], name, n) == 0)
            return 1;
    }
    return 0;
}

/* The field line of an HTTP/1.1 head (written by the exchange) that starts at ``p``, before
   ``end``: its name, lowercased in place, and its value without the whitespace around it.
   1: a field; 0: the empty line, or the end; -1: a line without a name.  *next: where the
   next line starts. */
static int field_line(char *p, char *end, size_t *nlen, char **value, size_t *vlen,
                      char **next) {
    if (p >= end)
        return 0;
    char *le = memchr(p, '\n', (size_t)(end - p));
    if (le == NULL)
        le = end;
    char *line_end = le > p && le[-1] == '\r' ? le - 1 : le;
    *next = le < end ? le + 1 : end;
    if (line_end == p)
        return 0;
    char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon == NULL || colon == p)
        return -1;
    *nlen = (size_t)(colon - p);
    for (size_t i = 0; i < *nlen; i++)
        if (p[i] >= 'A' && p[i] <= 'Z')
            p[i] = (char)(p[i] + 32);
    char *v = colon + 1, *ve = line_end;
    while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    *value = v;
    *vlen = (size_t)(ve - v);
    return 1;
}

/* the fields of an HTTP/1.1 head ("HTTP/1.1 200 OK\r\nName: value\r\n...\r\n"), as nghttp2
   name/value pairs pointing into ``block`` (names lowercased there); *status: the code */
static nghttp2_nv *head_fields(char *block, size_t n, size_t *count, int *status,
                               char *status_text) {
    /* the status line */
    char *eol = memchr(block, '\n', n);
    if (eol == NULL || n < 12 || memcmp(block, "HTTP/1.", 7) != 0) {
        PyErr_SetString(PyExc_ValueError, "respond: not an HTTP/1.x response head");
        return NULL;
    }
    memcpy(status_text, block + 9, 3);
    status_text[3] = 0;
    *status = atoi(status_text);
    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += block[i] == '\n';
    nghttp2_nv *nv = PyMem_RawMalloc((lines + 1) * sizeof(nghttp2_nv));
    if (nv == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    size_t k = 0;
    nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status_text, 7, 3, NGHTTP2_NV_FLAG_NONE};
    char *p = eol + 1, *end = block + n, *v, *next;
    size_t nlen, vlen;
    int got;
    while ((got = field_line(p, end, &nlen, &v, &vlen, &next)) > 0) {
        if (!is_connection_field(p, nlen))
            nv[k++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
        p = next;
    }
    if (got < 0) {
        PyMem_RawFree(nv);
        PyErr_SetString(PyExc_ValueError, "respond: a field line without a name");
        return NULL;
    }
    *count = k;
    return nv;
}

/* respond(stream_id, head, end): the response head (an HTTP/1.1 head: a status line and field
   lines) as HEADERS; ``end``: no body follows.  A 1xx head is sent as an interim response. */
static PyObject *Session_respond(Session *self, PyObject *args) {
    int32_t id;
    const char *head;
    Py_ssize_t n;
    int end;
    if (!ready(self) || !PyArg_ParseTuple(args, "iy#p", &id, &head, &n, &end))
        return NULL;
    char *block = PyMem_RawMalloc((size_t)n + 1);
    if (block == NULL)
        return PyErr_NoMemory();
    memcpy(block, head, (size_t)n);
    size_t count = 0;
    int status = 0;
    char status_text[4];
    nghttp2_nv *nv = head_fields(block, (size_t)n, &count, &status, status_text);
    if (nv == NULL) {
        PyMem_RawFree(block);
        return NULL;
    }
    int rv;
    if (status < 200) {
        rv = nghttp2_submit_headers(self->session, NGHTTP2_FLAG_NONE, id, NULL, nv, count, NULL);
    } else if (end) {
        rv = nghttp2_submit_response(self->session, id, nv, count, NULL);
    } else {
        Out *o = new_out(self);
        if (o == NULL) {
            PyMem_RawFree(nv);
            PyMem_RawFree(block);
            return NULL;
        }
        nghttp2_data_provider prd;
        prd.source.ptr = o;
        prd.read_callback = read_out;
        rv = nghttp2_submit_response(self->session, id, nv, count, &prd);
        if (rv == 0) {
            nghttp2_session_set_stream_user_data(self->session, id, o);
            o->id = id;
        }
        else
            drop_out(self, o);
    }
    /* nghttp2 copies the names and values when it submits */
    PyMem_RawFree(nv);
    PyMem_RawFree(block);
    if (rv != 0) {
        PyErr_Format(H2Error, "respond on stream %d: %s", id, nghttp2_strerror(rv));
        return NULL;
    }
    Py_RETURN_NONE;
}

/* request_head(head, scheme, pending) -> (stream_id, left, grpc_timeout): a request to the
   backend (client side) from the HTTP/1.1 head the exchange wrote ("METHOD target HTTP/1.1",
   field lines, the empty line: ``head`` holds at least that).  :authority is its Host; the
   connection-specific fields, Host and TE are left out and "te: trailers" is said (hopwire
   takes the trailers); names are lowercased.  ``left``: the body's Content-Length, -1 when
   chunked, 0 when it has none (END_STREAM with the HEADERS unless ``pending``: body bytes in
   hand).  ``grpc_timeout``: that field's value, or None.  ValueError: a head that cannot go
   over HTTP/2 (CONNECT, an Upgrade, no request line). */
static PyObject *Session_request_head(Session *self, PyObject *args) {
    Py_buffer view;
    const char *scheme;
    Py_ssize_t scheme_len;
    int pending;
    if (!ready(self) || !PyArg_ParseTuple(args, "y*y#p", &view, &scheme, &scheme_len, &pending))
        return NULL;
    if (!self->client) {
        PyBuffer_Release(&view);
        PyErr_SetString(H2Error, "request_head: not a client session");
        return NULL;
    }
    const char *src = view.buf;
    size_t n = (size_t)view.len;
    const char *stop = NULL;
    for (size_t i = 0; i + 3 < n; i++) {
        if (src[i] == '\r' && src[i + 1] == '\n' && src[i + 2] == '\r' && src[i + 3] == '\n') {
            stop = src + i + 2; /* the empty line */
            break;
        }
    }
    char *block = stop ? PyMem_RawMalloc((size_t)(stop - src)) : NULL;
    size_t lines = 0;
    if (block != NULL) {
        memcpy(block, src, (size_t)(stop - src));
        for (const char *p = src; p < stop; p++)
            lines += *p == '\n';
    }
    PyBuffer_Release(&view);
    if (stop == NULL) {
        PyErr_SetString(PyExc_ValueError, "the request head is incomplete");
        return NULL;
    }
    if (block == NULL)
        return PyErr_NoMemory();
    char *end = block + (stop - src);
    nghttp2_nv *nv = PyMem_RawMalloc((lines + 5) * sizeof(nghttp2_nv));
    if (nv == NULL) {
        PyMem_RawFree(block);
        return PyErr_NoMemory();
    }
    PyObject *out = NULL, *timeout = NULL;
    const char *why = NULL;
    /* the request line: METHOD SP target SP HTTP/1.1 */
    char *eol = memchr(block, '\r', (size_t)(end - block));
    char *sp1 = eol ? memchr(block, ' ', (size_t)(eol - block)) : NULL;
    if (eol == NULL || sp1 == NULL || eol - block < 10 || memcmp(eol - 9, " HTTP/1.1", 9) != 0 ||
        eol - 9 <= sp1 + 1) {
        why = "not an HTTP/1.1 request line";
        goto done;
    }
    if (sp1 - block == 7 && memcmp(block, "CONNECT", 7) == 0) {
        why = "a CONNECT request cannot go to an HTTP/2 backend";
        goto done;
    }
    size_t k = 0;
    nv[k++] = (nghttp2_nv){(uint8_t *)":method", (uint8_t *)block, 7, (size_t)(sp1 - block), 0};
    nv[k++] = (nghttp2_nv){(uint8_t *)":scheme", (uint8_t *)scheme, 7, (size_t)scheme_len, 0};
    size_t authority_at = k++;
    nv[authority_at] = (nghttp2_nv){(uint8_t *)":authority", (uint8_t *)"", 10, 0, 0};
    nv[k++] = (nghttp2_nv){(uint8_t *)":path", (uint8_t *)(sp1 + 1), 5, (size_t)(eol - 9 - sp1 - 1), 0};
    long long left = 0;
    char *p = eol + 2, *v, *next;
    size_t nlen, vlen;
    int got;
    for (; (got = field_line(p, end, &nlen, &v, &vlen, &next)) > 0; p = next) {
        char *ve = v + vlen;
        if (nlen == 4 && memcmp(p, "host", 4) == 0) {
            nv[authority_at].value = (uint8_t *)v;
            nv[authority_at].valuelen = vlen;
        } else if (nlen == 14 && memcmp(p, "content-length", 14) == 0) {
            left = 0;
            for (char *d = v; d < ve; d++)
                left = left * 10 + (*d >= '0' && *d <= '9' ? *d - '0' : 0);
            nv[k++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, nlen, vlen, 0};
        } else if (nlen == 17 && memcmp(p, "transfer-encoding", 17) == 0) {
            left = -1; /* chunked: the exchange's only coding */
        } else if (nlen == 7 && memcmp(p, "upgrade", 7) == 0) {
            why = "an Upgrade request cannot go to an HTTP/2 backend";
            goto done;
        } else if (nlen == 2 && memcmp(p, "te", 2) == 0) {
            /* said below */
        } else if (!is_connection_field(p, nlen)) {
            if (nlen == 12 && memcmp(p, "grpc-timeout", 12) == 0 && timeout == NULL) {
                timeout = PyBytes_FromStringAndSize(v, (Py_ssize_t)vlen);
                if (timeout == NULL)
                    goto done;
            }
            nv[k++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, nlen, vlen, 0};
        }
    }
    if (got < 0) {
        why = "a field line without a name";
        goto done;
    }
    nv[k++] = (nghttp2_nv){(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0};
    int end_stream = left == 0 && !pending;
    Out *o = NULL;
    nghttp2_data_provider prd;
    if (!end_stream) {
        o = new_out(self);
        if (o == NULL)
            goto done;
        prd.source.ptr = o;
        prd.read_callback = read_out;
    }
    int32_t id = nghttp2_submit_request(self->session, NULL, nv, k, end_stream ? NULL : &prd, o);
    if (id < 0) {
        drop_out(self, o);
        PyErr_Format(H2Error, "request: %s", nghttp2_strerror(id));
        goto done;
    }
    if (o != NULL)
        o->id = id;
    out = Py_BuildValue("(iLO)", id, left, timeout ? timeout : Py_None);
done:
    if (why != NULL)
        PyErr_SetString(PyExc_ValueError, why);
    Py_XDECREF(timeout);
    PyMem_RawFree(nv);
    PyMem_RawFree(block);
    return out;
}

/* ping(): a PING to the peer (its ACK: handler.h2_pong()) */
static PyObject *Session_ping(Session *self, PyObject *unused) {
    if (!ready(self))
        return NULL;
    int rv = nghttp2_submit_ping(self->session, NGHTTP2_FLAG_NONE, NULL);
    if (rv != 0) {
        PyErr_Format(H2Error, "ping: %s", nghttp2_strerror(rv));
        return NULL;
    }
    Py_RETURN_NONE;
}

/* the queue of a stream's body, or NULL */
static Out *find_out(Session *self, int32_t id) {
    Out *o = nghttp2_session_get_stream_user_data(self->session, id);
    if (o == NULL) { /* a request not yet sent: its stream is made as its HEADERS go out */
        for (o = self->outs; o != NULL && o->id != id; o = o->next)
            ;
    }
    return o;
}

static Out *out_of(Session *self, int32_t id) {
    Out *o = find_out(self, id);
    if (o == NULL)
        PyErr_Format(H2Error, "stream %d has no response body open", id);
    return o;
}

/* send(stream_id, data) -> queued: body bytes for the stream; what its queue now holds (the
   connection pauses the source above its high-water mark and calls watch) */
static PyObject *Session_send(Session *self, PyObject *args) {
    int32_t id;
    Py_buffer view;
    if (!ready(self) || !PyArg_ParseTuple(args, "iy*", &id, &view))
        return NULL;
    Out *o = out_of(self, id);
    if (o == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    size_t need = o->len + (size_t)view.len;
    if (need > o->cap) {
        if (o->at > 0) { /* move the unsent part to the front first */
            memmove(o->data, o->data + o->at, o->len - o->at);
            o->len -= o->at;
            o->at = 0;
            need = o->len + (size_t)view.len;
        }
        if (need > o->cap) {
            size_t cap = o->cap ? o->cap : 16384;
            while (cap < need)
                cap *= 2;
            char *more = PyMem_RawRealloc(o->data, cap);
            if (more == NULL) {
                PyBuffer_Release(&view);
                return PyErr_NoMemory();
            }
            o->data = more;
            o->cap = cap;
        }
    }
    memcpy(o->data + o->len, view.buf, (size_t)view.len);
    o->len += (size_t)view.len;
    PyBuffer_Release(&view);
    if (o->deferred) {
        o->deferred = 0;
        nghttp2_session_resume_data(self->session, id);
    }
    return PyLong_FromSize_t(o->len - o->at);
}

/* watch(stream_id): report the stream in drained() once its queue falls to the low water */
static PyObject *Session_watch(Session *self, PyObject *arg) {
    int32_t id = (int32_t)PyLong_AsLong(arg);
    if (PyErr_Occurred() || !ready(self))
        return NULL;
    Out *o = find_out(self, id);
    if (o != NULL)
        o->watched = 1;
    Py_RETURN_NONE;
}

static PyObject *Session_drained(Session *self, PyObject *unused) {
    PyObject *out = PyList_New((Py_ssize_t)self->ndrained);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < self->ndrained; i++)
        PyList_SET_ITEM(out, (Py_ssize_t)i, PyLong_FromLong(self->drained[i]));
    self->ndrained = 0;
    return out;
}

/* end(stream_id, trailers=None): the body is complete; [(name, value)] trailers follow it */
static PyObject *Session_end(Session *self, PyObject *args) {
    int32_t id;
    PyObject *trailers = Py_None;
    if (!ready(self) || !PyArg_ParseTuple(args, "i|O", &id, &trailers))
        return NULL;
    Out *o = out_of(self, id);
    if (o == NULL)
        return NULL;
    if (trailers != Py_None) {
        PyObject *seq = PySequence_Fast(trailers, "trailers: a list of (name, value)");
        if (seq == NULL)
            return NULL;
        Py_ssize_t k = PySequence_Fast_GET_SIZE(seq), total = 0;
        for (Py_ssize_t i = 0; i < k; i++) {
            PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
                !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) || !PyBytes_Check(PyTuple_GET_ITEM(pair, 1))) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_TypeError, "trailers: (bytes, bytes) pairs");
                return NULL;
            }
            total += PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 0)) + PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 1));
        }
        o->trailer_block = PyMem_RawMalloc((size_t)total + 1);
        o->trailers = PyMem_RawMalloc(((size_t)k + 1) * sizeof(nghttp2_nv));
        if (o->trailer_block == NULL || o->trailers == NULL) {
            Py_DECREF(seq);
            return PyErr_NoMemory();
        }
        char *at = o->trailer_block;
        for (Py_ssize_t i = 0; i < k; i++) {
            PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
            PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
            size_t nl = (size_t)PyBytes_GET_SIZE(name), vl = (size_t)PyBytes_GET_SIZE(value);
            memcpy(at, PyBytes_AS_STRING(name), nl);
            for (size_t j = 0; j < nl; j++)
                if (at[j] >= 'A' && at[j] <= 'Z')
                    at[j] = (char)(at[j] + 32);
            memcpy(at + nl, PyBytes_AS_STRING(value), vl);
            o->trailers[i] = (nghttp2_nv){(uint8_t *)at, (uint8_t *)(at + nl), nl, vl, NGHTTP2_NV_FLAG_NONE};
            at += nl + vl;
        }
        o->ntrailers = (size_t)k;
        Py_DECREF(seq);
    }
    o->ended = 1;
    if (o->deferred) {
        o->deferred = 0;
        nghttp2_session_resume_data(self->session, id);
    }
    Py_RETURN_NONE;
}

/* reset(stream_id, code): RST_STREAM (the exchange failed after its head, or the client's
   stream is refused) */
static PyObject *Session_reset(Session *self, PyObject *args) {
    int32_t id;
    unsigned int code;
    if (!ready(self) || !PyArg_ParseTuple(args, "iI", &id, &code))
        return NULL;
    int rv = nghttp2_submit_rst_stream(self->session, NGHTTP2_FLAG_NONE, id, code);
    if (rv != 0 && rv != NGHTTP2_ERR_INVALID_ARGUMENT) {
        PyErr_Format(H2Error, "reset stream %d: %s", id, nghttp2_strerror(rv));
        return NULL;
    }
    Py_RETURN_NONE;
}

/* consume(stream_id, n): the body bytes the exchange has passed on: the client may send as
   many more on the stream (WINDOW_UPDATE; the connection's window reopened on receipt) */
static PyObject *Session_consume(Session *self, PyObject *args) {
    int32_t id;
    Py_ssize_t n;
    if (!ready(self) || !PyArg_ParseTuple(args, "in", &id, &n))
        return NULL;
    int rv = nghttp2_session_consume_stream(self->session, id, (size_t)n);
    if (rv == NGHTTP2_ERR_INVALID_ARGUMENT) /* the stream is gone: nothing to reopen */
        rv = 0;
    if (rv != 0) {
        PyErr_Format(H2Error, "consume on stream %d: %s", id, nghttp2_strerror(rv));
        return NULL;
    }
    Py_RETURN_NONE;
}

/* goaway(code=0, graceful=True): graceful: a shutdown notice (the client opens no new
   stream, the open ones finish); then, or at once, GOAWAY with the last stream taken */
static PyObject *Session_goaway(Session *self, PyObject *args) {
    unsigned int code = 0;
    int graceful = 1;
    if (!ready(self) || !PyArg_ParseTuple(args, "|Ip", &code, &graceful))
        return NULL;
    int rv = graceful && code == 0
                 ? nghttp2_submit_shutdown_notice(self->session)
                 : nghttp2_submit_goaway(self->session, NGHTTP2_FLAG_NONE,
                                         nghttp2_session_get_last_proc_stream_id(self->session),
                                         code, NULL, 0);
    if (rv != 0) {
        PyErr_Format(H2Error, "goaway: %s", nghttp2_strerror(rv));
        return NULL;
    }
    Py_RETURN_NONE;
}

/* terminate(code): GOAWAY now, with the last stream processed (after a shutdown notice) */
static PyObject *Session_terminate(Session *self, PyObject *args) {
    unsigned int code = 0;
    if (!ready(self) || !PyArg_ParseTuple(args, "|I", &code))
        return NULL;
    int rv = nghttp2_session_terminate_session2(
        self->session, nghttp2_session_get_last_proc_stream_id(self->session), code);
    if (rv != 0) {
        PyErr_Format(H2Error, "terminate: %s", nghttp2_strerror(rv));
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Session_want(Session *self, PyObject *unused) {
    if (!ready(self))
        return NULL;
    return PyBool_FromLong(nghttp2_session_want_read(self->session) ||
                           nghttp2_session_want_write(self->session));
}

static PyObject *Session_counters(Session *self, PyObject *unused) {
    return Py_BuildValue("{sKsKsKsK}", "invalid_frames", self->invalid_frames, "invalid_fields",
                         self->invalid_fields, "resets_in", self->resets_in, "oversized_heads",
                         self->oversized_heads);
}

static PyObject *Session_queued(Session *self, PyObject *arg) {
    int32_t id = (int32_t)PyLong_AsLong(arg);
    if (PyErr_Occurred() || !ready(self))
        return NULL;
    Out *o = find_out(self, id);
    return PyLong_FromSize_t(o ? o->len - o->at : 0);
}

static PyObject *Session_close(Session *self, PyObject *unused) {
    /* the connection is gone: drop the session (no callback reaches Python) */
    Py_CLEAR(self->handler);
    drop_session(self);
    Py_RETURN_NONE;
}

static PyMethodDef Session_methods[] = {
    {"receive", (PyCFunction)Session_receive, METH_O, "Feed the client's bytes."},
    {"pending", (PyCFunction)Session_pending, METH_NOARGS, "The bytes to write now."},
    {"respond", (PyCFunction)Session_respond, METH_VARARGS, "respond(stream_id, head, end)"},
    {"send", (PyCFunction)Session_send, METH_VARARGS, "send(stream_id, data) -> queued"},
    {"watch", (PyCFunction)Session_watch, METH_O, "watch(stream_id): report when drained"},
    {"drained", (PyCFunction)Session_drained, METH_NOARGS, "Streams whose queue fell low."},
    {"end", (PyCFunction)Session_end, METH_VARARGS, "end(stream_id, trailers=None)"},
    {"reset", (PyCFunction)Session_reset, METH_VARARGS, "reset(stream_id, code)"},
    {"consume", (PyCFunction)Session_consume, METH_VARARGS, "consume(stream_id, n)"},
    {"goaway", (PyCFunction)Session_goaway, METH_VARARGS, "goaway(code=0, graceful=True)"},
    {"terminate", (PyCFunction)Session_terminate, METH_VARARGS, "terminate(code=0)"},
    {"want", (PyCFunction)Session_want, METH_NOARGS, "Whether the session goes on."},
    {"counters", (PyCFunction)Session_counters, METH_NOARGS, "What was refused, counted."},
    {"queued", (PyCFunction)Session_queued, METH_O, "queued(stream_id): body bytes waiting"},
    {"close", (PyCFunction)Session_close, METH_NOARGS, "Drop the session."},
    {"ping", (PyCFunction)Session_ping, METH_NOARGS, "A PING (its ACK: h2_pong)."},
    {"request_head", (PyCFunction)Session_request_head, METH_VARARGS,
     "request_head(head, scheme, pending) -> (stream_id, left, grpc_timeout) (client side)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hopwire.http._h2.Session",
    .tp_basicsize = sizeof(Session),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Session(handler, max_concurrent_streams=250, decoder_table_size=4096, "
              "encoder_table_size=4096, initial_window=65535, max_field_bytes=1MiB, "
              "low_water=16KiB, client=False): one HTTP/2 connection's framing (libnghttp2): a "
              "client's (server side), or a backend's (client side).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Session_init,
    .tp_traverse = (traverseproc)Session_traverse,
    .tp_clear = (inquiry)Session_clear,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_methods = Session_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hopwire.http._h2",
    "HTTP/2 framing through libnghttp2 (see hopwire.http.h2).", -1, NULL,
};

PyMODINIT_FUNC PyInit__h2(void) {
    if ((s_request = PyUnicode_InternFromString("h2_request")) == NULL ||
        (s_data = PyUnicode_InternFromString("h2_data")) == NULL ||
        (s_end = PyUnicode_InternFromString("h2_end")) == NULL ||
        (s_closed = PyUnicode_InternFromString("h2_closed")) == NULL ||
        (s_response = PyUnicode_InternFromString("h2_response")) == NULL ||
        (s_trailers = PyUnicode_InternFromString("h2_trailers")) == NULL ||
        (s_goaway = PyUnicode_InternFromString("h2_goaway")) == NULL ||
        (s_pong = PyUnicode_InternFromString("h2_pong")) == NULL)
        return NULL;
    if (PyType_Ready(&SessionType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    H2Error = PyErr_NewException("hopwire.http._h2.H2Error", PyExc_Exception, NULL);
    nghttp2_info *info = nghttp2_version(0);
    if (H2Error == NULL || PyModule_AddObjectRef(m, "H2Error", H2Error) < 0 ||
        PyModule_AddObjectRef(m, "Session", (PyObject *)&SessionType) < 0 ||
        PyModule_AddStringConstant(m, "LIBRARY", info->version_str) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
