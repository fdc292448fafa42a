"""`python -m tests.conformance_report`: what the conformance tests validate, per mode.

For dev, prod and every example in each (dataplane, routing) combination: the objects validated
and the CEL rule evaluations (one rule at one place of one object) per kind, plus the totals and
the problems found (none, when the conformance tests pass). The numbers to quote in a report.
"""

from __future__ import annotations

from collections import Counter

from tests import conformance
from tests.conftest import STACK_SOURCES, source_id
from tests.test_conformance import MODES, mode_objects


def main() -> None:
    for dataplane, routing in MODES:
        objects, cel, skipped, problems = Counter(), Counter(), Counter(), 0
        for source in STACK_SOURCES:
            config, rendered = mode_objects(source, dataplane, routing)
            channel = config.platform.gateway_api_channel
            for obj in rendered:
                objects[conformance.group_kind(obj)] += 1
                problems += len(conformance.problems(obj, gateway_api_channel=channel))
                for verdict in conformance.cel_verdicts(obj, channel):
                    (skipped if verdict.skipped else cel)[conformance.group_kind(obj)] += 1
        sources = ", ".join(source_id(s) for s in STACK_SOURCES)
        print(f"## dataplane={dataplane} routing={routing} ({sources})")
        print(
            f"objects validated: {sum(objects.values())}, CEL evaluations: {sum(cel.values())}, "
            f"transition rules skipped: {sum(skipped.values())}, problems: {problems}"
        )
        for kind in sorted(objects):
            print(f"  {kind:45} objects {objects[kind]:4}  CEL evaluations {cel[kind]:5}")
        print()


if __name__ == "__main__":
    main()
