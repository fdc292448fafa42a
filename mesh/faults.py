"""Fault injection for resilience tests: delays and aborts on a share of a model's requests.

Kept apart from route building so that any route list can take it: the same fault goes on every
HTTP route of the model's VirtualService, for the gateway and the mesh alike. Protected stacks
refuse it (see `mesh.config.StackConfig._protected_rules`).
"""

from __future__ import annotations

from mesh.config import Fault, StackConfig


def fault_block(fault: Fault) -> dict:
    """Istio's `HTTPFaultInjection` for a configured fault."""
    block: dict = {}
    if fault.delay is not None:
        block["delay"] = {
            "fixedDelay": fault.delay.fixed_delay,
            "percentage": {"value": fault.delay.percent},
        }
    if fault.abort is not None:
        block["abort"] = {
            "httpStatus": fault.abort.http_status,
            "percentage": {"value": fault.abort.percent},
        }
    return block


def http_fault(config: StackConfig, name: str) -> dict | None:
    fault = config.models[name].fault
    return fault_block(fault) if fault is not None else None


def with_fault(routes: list[dict], fault: dict | None) -> list[dict]:
    """The routes, each carrying `fault` (a copy per route), or unchanged without one."""
    if fault is None:
        return routes
    return [{**route, "fault": {k: dict(v) for k, v in fault.items()}} for route in routes]
