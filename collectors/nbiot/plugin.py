"""The NB-IoT plug-in: `[nbiot]`, frames over UDP and CoAP and operator platform pushes, parsed here."""

from __future__ import annotations

import ssl

from collectors.nbiot.config import NbiotConfig
from collectors.nbiot.metrics import NbiotMetrics
from collectors.plugin import Collector, CollectorContext, CollectorPlugin
from core.secrets import reveal
from core.tls import server_context


def build(ctx: CollectorContext) -> Collector | None:
    """The receivers `[nbiot]` enables as one collector; None when none is."""
    nb = ctx.section("nbiot", NbiotConfig)
    if not (nb.udp or nb.coap or nb.push):
        return None
    # imported only when enabled: aiohttp and aiocoap take a second or more to import
    from collectors.nbiot.coap import CoapEndpoint
    from collectors.nbiot.collector import NbiotCollector
    from collectors.nbiot.push import PushReceiver
    from collectors.nbiot.udp import UdpListener

    return NbiotCollector(
        udp=UdpListener(nb.udp_host, nb.udp_port, nb.udp_buffer) if nb.udp else None,
        coap=CoapEndpoint(nb.coap_host, nb.coap_port, nb.coap_path) if nb.coap else None,
        push=PushReceiver(nb.push_host, nb.push_port, ctwing_token=reveal(nb.ctwing_token),
                          onenet_token=reveal(nb.onenet_token), max_body_bytes=nb.max_body_bytes,
                          nonce_window_s=nb.nonce_window_s, max_push_age_s=nb.max_push_age_s,
                          ctwing_sources=nb.ctwing_sources, tls=_push_tls(ctx, nb)) if nb.push else None)


def _push_tls(ctx: CollectorContext, nb: NbiotConfig) -> ssl.SSLContext | None:
    """The push receiver's server context (TLS 1.2+) from `push_cert_file`, None for plain HTTP."""
    if not nb.push_cert_file:
        return None
    return server_context(ctx.path(nb.push_cert_file), ctx.path(nb.push_key_file) if nb.push_key_file else None,
                          setting="nbiot.push")


def unshared(ctx: CollectorContext) -> str | None:
    """The NB-IoT receivers bind ports: on one machine only one process can hold each."""
    nb = ctx.section("nbiot", NbiotConfig)
    bound = [f"{name} port {port}" for on, name, port in ((nb.udp, "UDP", nb.udp_port), (nb.coap, "CoAP", nb.coap_port),
                                                         (nb.push, "HTTP push", nb.push_port)) if on]
    if not bound:
        return None
    return (f"[nbiot] listens on {', '.join(bound)}, which only one process of a machine can bind; run NB-IoT in "
            "its own `urbansense run --role ingest` with a config that enables only [nbiot]")


PLUGIN = CollectorPlugin(name="nbiot", sections={"nbiot": NbiotConfig}, build=build, metrics=NbiotMetrics,
                         unshared=unshared)
