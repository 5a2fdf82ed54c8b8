"""The shapes of Traefik's ``traefik.io/v1alpha1`` objects, as JSON schemas, for the fake API
server to check the tests' objects with (as the API server checks objects against the CRDs'
``openAPIV3Schema``).

Written for these tests from Traefik 3.7's CRD definitions (``kubernetes-crd-definition-v1.yml``
in Traefik's documentation): the fields of each kind's ``spec`` that the providers read, and
no others (``additionalProperties: false``), with their types and required fields; the inside
of a middleware whose options hopwire passes through as they are is left open.  Traefik's own
definitions are not available offline, and are Traefik's to publish: the Kubernetes overlay
points at them.
"""

from __future__ import annotations

from typing import Any

import jsonschema


def obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
INT_OR_STR = {"anyOf": [INT, STR]}
STRS = {"type": "array", "items": STR}
OPEN = {"type": "object"}
REF = obj({"name": STR, "namespace": STR}, ("name",))

LOAD_BALANCER = obj(
    {
        "name": STR,
        "namespace": STR,
        "kind": {"enum": ["Service", "TraefikService"]},
        "port": INT_OR_STR,
        "scheme": STR,
        "weight": INT,
        "passHostHeader": BOOL,
        "serversTransport": STR,
        "strategy": STR,
        "nativeLB": BOOL,
        "nodePortLB": BOOL,
        "healthCheck": OPEN,
        "passiveHealthCheck": OPEN,
        "responseForwarding": OPEN,
        "sticky": OPEN,
        "middlewares": {"type": "array", "items": REF},
    },
    ("name",),
)

SPECS: dict[str, dict[str, Any]] = {
    "IngressRoute": obj(
        {
            "entryPoints": STRS,
            "ingressClassName": STR,
            "parentRefs": {"type": "array", "items": OPEN},
            "routes": {
                "type": "array",
                "items": obj(
                    {
                        "match": STR,
                        "kind": {"enum": ["Rule"]},
                        "priority": INT,
                        "syntax": STR,
                        "middlewares": {"type": "array", "items": REF},
                        "services": {"type": "array", "items": LOAD_BALANCER},
                        "observability": obj(
                            {
                                "accessLogs": BOOL,
                                "metrics": BOOL,
                                "tracing": BOOL,
                                "traceVerbosity": {"enum": ["minimal", "detailed"]},
                            }
                        ),
                    },
                    ("match",),
                ),
            },
            "tls": obj(
                {
                    "secretName": STR,
                    "options": REF,
                    "store": REF,
                    "certResolver": STR,
                    "domains": {"type": "array", "items": OPEN},
                }
            ),
        },
        ("routes",),
    ),
    "Middleware": obj(
        {
            **{
                kind: OPEN
                for kind in (
                    "addPrefix",
                    "buffering",
                    "circuitBreaker",
                    "compress",
                    "contentType",
                    "digestAuth",
                    "encodedCharacters",
                    "forwardAuth",
                    "grpcWeb",
                    "headers",
                    "inFlightReq",
                    "ipAllowList",
                    "ipWhiteList",
                    "passTLSClientCert",
                    "plugin",
                    "rateLimit",
                    "redirectRegex",
                    "redirectScheme",
                    "replacePath",
                    "replacePathRegex",
                    "retry",
                    "stripPrefixRegex",
                )
            },
            "basicAuth": obj(
                {"secret": STR, "realm": STR, "removeHeader": BOOL, "headerField": STR}
            ),
            "chain": obj({"middlewares": {"type": "array", "items": REF}}),
            "errors": obj(
                {
                    "status": STRS,
                    "service": LOAD_BALANCER,
                    "query": STR,
                    "statusRewrites": OPEN,
                    "errorRequestHeaders": STRS,
                }
            ),
            "stripPrefix": obj({"prefixes": STRS, "forceSlash": BOOL}),
        }
    ),
    "TraefikService": obj(
        {
            "weighted": obj(
                {"services": {"type": "array", "items": LOAD_BALANCER}, "sticky": OPEN}
            ),
            "mirroring": OPEN,
            "failover": OPEN,
            "highestRandomWeight": OPEN,
        }
    ),
    "TLSOption": obj(
        {
            "minVersion": STR,
            "maxVersion": STR,
            "cipherSuites": STRS,
            "curvePreferences": STRS,
            "clientAuth": obj({"secretNames": STRS, "clientAuthType": STR}),
            "sniStrict": BOOL,
            "alpnProtocols": STRS,
            "disableSessionTickets": BOOL,
            "preferServerCipherSuites": BOOL,
        }
    ),
    "TLSStore": obj(
        {
            "defaultCertificate": obj({"secretName": STR}, ("secretName",)),
            "certificates": {"type": "array", "items": obj({"secretName": STR}, ("secretName",))},
            "defaultGeneratedCert": OPEN,
        }
    ),
    "ServersTransport": obj(
        {
            "serverName": STR,
            "insecureSkipVerify": BOOL,
            "rootCAs": {"type": "array", "items": obj({"secret": STR, "configMap": STR})},
            "rootCAsSecrets": STRS,
            "certificatesSecrets": STRS,
            "maxIdleConnsPerHost": INT,
            "forwardingTimeouts": OPEN,
            "disableHTTP2": BOOL,
            "peerCertURI": STR,
            "peerCertSANs": STRS,
            "spiffe": OPEN,
            "cipherSuites": STRS,
            "minVersion": STR,
            "maxVersion": STR,
        }
    ),
}


def validate(resource: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when a traefik.io object is not of Traefik's shape."""
    kind = resource["kind"]
    if kind not in SPECS:
        return  # the TCP and UDP kinds: never read beyond a count
    jsonschema.validate(
        resource,
        obj(
            {
                "apiVersion": {"const": "traefik.io/v1alpha1"},
                "kind": {"const": kind},
                "metadata": {"type": "object"},
                "spec": SPECS[kind],
            },
            ("apiVersion", "kind", "metadata", "spec"),
        ),
    )
