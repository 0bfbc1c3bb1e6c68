from graphql import parse
from storefront.entrypoints.graphql import schema
from storefront.entrypoints.graphql_cost import selection_cost


def cost(query: str) -> int:
    document = parse(query)
    fragments = {d.name.value: d for d in document.definitions  # type: ignore[attr-defined]
                 if d.kind == "fragment_definition"}
    return selection_cost(document.definitions[0].selection_set,  # type: ignore[attr-defined]
                          fragments)


def test_a_page_costs_its_page_size_times_what_each_item_asks() -> None:
    assert cost("{ products(pageSize: 8) { items { id } } }") == 1 + 8 * 2
    assert cost("{ products(pageSize: 8) { items { id name } } }") == 1 + 8 * 3
    # Not given: the default page (12); a variable: the cap (100).
    assert cost("{ products { items { id } } }") == 1 + 12 * 2
    assert cost("query($n: Int!) { products(pageSize: $n) { items { id } } }") == 1 + 100 * 2


def test_fragments_cost_what_they_expand_to_and_cycles_stop() -> None:
    inline = cost("{ myOrders(first: 5) { id items { quantity } } }")
    spread = cost("query { myOrders(first: 5) { ...O } } fragment O on Order { id items "
                  "{ quantity } }")
    assert inline == spread == 5 * (1 + 1 + 50 * 2)
    assert cost("query { products { ...A } } fragment A on ProductPage { total ...A }") == 2


async def test_too_costly_and_too_deep_are_validation_errors_before_execution() -> None:
    # No context at all: a query that got past validation would fail on it.
    s = schema(max_depth=3, max_cost=100)
    costly = await s.execute("{ products(pageSize: 100) { items { id } } }")
    assert costly.errors and "query cost 201 exceeds the limit of 100" in str(costly.errors[0])
    deep = await s.execute("{ products(pageSize: 1) { items { categoryDetails { products("
                          "pageSize: 1) { total } } } } }")
    assert deep.errors and "exceeds maximum operation depth of 3" in str(deep.errors[0])
