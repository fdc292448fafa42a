"""Entry point of the ml-mesh policy pack: `pulumi preview --policy-pack policy`."""

from pulumi_policy import PolicyPack

from policies import ENFORCEMENT_LEVEL, PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=ENFORCEMENT_LEVEL)
