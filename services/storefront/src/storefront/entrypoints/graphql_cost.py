"""A cost limit for GraphQL queries, checked before anything runs.

Each field costs 1; a field returning a list multiplies what is under it by how many items it
may return (``pageSize`` when given, else the list's cap below). A page of 100 products
with their availability costs about 100 * 6, so a client cannot ask for a fan-out the services would
pay for. Depth is limited separately (strawberry's QueryDepthLimiter).
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

# The ``items`` of a page (products) are as many as its pageSize (12 when not given); a
# list field counts ``first`` (its default below); other ``items`` (a cart's, an order's
# lines) count as their cap, 50.
PAGED = frozenset({"products"})
LIST_FIRST = {"myOrders": 10, "categories": 30}
ITEMS_CAP = 50
PAGE_CAP = 100
DEFAULT_PAGE = 12


def _page_size(field: FieldNode) -> int | None:
    """``pageSize`` or ``first`` as written; a variable (unknown while validating) counts
    as the cap."""
    for arg in field.arguments or ():
        if arg.name.value in ("pageSize", "first"):
            if isinstance(arg.value, IntValueNode):
                return max(1, min(int(arg.value.value), PAGE_CAP))
            return PAGE_CAP
    return None


def selection_cost(selection_set: SelectionSetNode | None,
                   fragments: dict[str, FragmentDefinitionNode],
                   page_size: int | None = None, seen: frozenset[str] = frozenset()) -> int:
    """The cost of a selection; ``page_size`` is how many ``items`` the enclosing page
    field returns (its pageSize, or the list's cap)."""
    if selection_set is None:
        return 0
    total = 0
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            if node.name.value.startswith("__"):
                total += 1
                continue
            name, asked = node.name.value, _page_size(node)
            # A page (products) holds pageSize items; a list field (myOrders) returns
            # ``first`` of them; the items of anything else (cart, order) up to the cap.
            paged = name in PAGED
            below = selection_cost(node.selection_set, fragments,
                                   (asked or DEFAULT_PAGE) if paged else None, seen)
            count = 1
            if node.selection_set is not None and not paged:
                if name in LIST_FIRST:
                    count = asked or LIST_FIRST[name]
                elif name == "items":
                    count = page_size or ITEMS_CAP
            total += (1 + below) * count
        elif isinstance(node, InlineFragmentNode):
            total += selection_cost(node.selection_set, fragments, page_size, seen)
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:
                total += selection_cost(fragment.selection_set, fragments, page_size,
                                        seen | {name})
    return total


def cost_rule(max_cost: int, variables_of: Any = None) -> type[ValidationRule]:
    class CostLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments = {d.name.value: d for d in context.document.definitions
                              if isinstance(d, FragmentDefinitionNode)}

        def enter_operation_definition(self, node: OperationDefinitionNode,
                                       *_args: Any) -> None:
            cost = selection_cost(node.selection_set, self.fragments)
            if cost > max_cost:
                self.report_error(GraphQLError(
                    f"query cost {cost} exceeds the limit of {max_cost}: ask for fewer "
                    "items (pageSize) or fewer fields", node,
                    extensions={"code": "QUERY_TOO_COSTLY", "cost": cost,
                                "limit": max_cost}))

    return CostLimit
