"""Kubernetes resource quantities read as the API server reads them, to compare them exactly.

`500m` and `0.5` are the same CPU, `1Gi` is 1073741824 bytes and `1G` 1000000000: a request is
compared with its limit by value, never by text. This mirrors `resource.ParseQuantity`
(k8s.io/apimachinery/pkg/api/resource/quantity.go): an optional sign, digits with an optional
fraction, then one suffix, binary (`Ki Mi Gi Ti Pi Ei`), decimal (`n u m "" k M G T P E`) or a
decimal exponent (`e3`, `E-2`); nothing else, no spaces. A value finer than a nano unit is
rounded up to one, as Kubernetes rounds it (`Quantity` keeps at most nine decimal places).
"""

from __future__ import annotations

import re
from decimal import ROUND_UP, Decimal, localcontext

_NUMBER = re.compile(r"^([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)$")
_EXPONENT = re.compile(r"^[eE]([+-]?[0-9]+)$")
_BINARY = {f"{unit}i": 1024**power for power, unit in enumerate("KMGTPE", start=1)}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1)}
_DECIMAL |= {unit: Decimal(1000**power) for power, unit in enumerate("kMGTPE", start=1)}
_NANO = Decimal("1e-9")


def parse_quantity(text: object) -> Decimal:
    """The exact value of a quantity (`"1Gi"` -> 1073741824), or ValueError naming the form.

    Numbers are accepted as the API server accepts them in JSON (an int or float quantity),
    booleans are not.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"{text!r} is not a quantity such as 500m, 2, 512Mi or 4Gi")
    with localcontext() as context:
        context.prec = 80  # 999Ei to the nano unit: exact, never rounded by the context
        return _parse(str(text)) if isinstance(text, str) else _nano(Decimal(str(text)))


def _parse(text: str) -> Decimal:
    match = _NUMBER.match(text)
    invalid = ValueError(
        f"{text!r} is not a quantity: it must match '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' "
        "(Kubernetes resource.ParseQuantity), such as 500m, 2, 512Mi or 4Gi"
    )
    if match is None:
        raise invalid
    sign, whole, fraction, suffix = match.groups()
    if not whole and not fraction:
        raise invalid
    number = Decimal(f"{whole or 0}.{fraction or 0}")
    if suffix in _BINARY:
        factor = Decimal(_BINARY[suffix])
    elif suffix in _DECIMAL:
        factor = _DECIMAL[suffix]
    elif exponent := _EXPONENT.match(suffix):
        factor = Decimal(10) ** int(exponent.group(1))
    else:
        raise invalid
    value = number * factor
    if sign == "-":
        value = -value
    return _nano(value)


def _nano(value: Decimal) -> Decimal:
    return value.quantize(_NANO, rounding=ROUND_UP).normalize() if value else Decimal(0)


def format_quantity(value: Decimal) -> str:
    """A plain decimal for messages (`Decimal('0.5')` -> `0.5`, 2E+3 -> `2000`)."""
    return format(value.normalize(), "f")
