"""The Kubernetes providers: Traefik's ``providers.kubernetesCRD`` (IngressRoute, Middleware,
TraefikService, TLSOption, TLSStore, ServersTransport) and ``providers.kubernetesIngress``
(Ingress, IngressClass), read from the API server and turned into dynamic configuration.

    api         a small asyncio client of the API server: LIST and WATCH over HTTP/1.1 + JSON
    reflector   one resource kind kept in memory: list, then watch from its resourceVersion
                (bookmarks; a relist on 410 Gone; reconnection with backoff)
    objects     what both providers read alike: Services and their EndpointSlices as servers,
                Secrets as certificates and users, names as Traefik makes them
    crd         IngressRoute & co. -> routers, services, middlewares, transports, TLS
    ingress     Ingress -> routers and services, with Traefik's router.* annotations
    provider    the provider process: reflectors, the throttle, each object checked alone,
                the snapshot written where the master's live configuration reads it

The master forks one provider process per configured provider (``Arbiter.start_providers``).
It writes its whole dynamic configuration as a JSON file in the master's private directory;
the master reads it beside the file provider's files, checks the merge and hands it to the
workers exactly as a changed file (``live.Watcher``).  A provider process owns the loop,
the sockets and the API server's state; the master stays single-threaded and loop-free.
"""
