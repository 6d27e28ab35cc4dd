"""A pre-validation guard: refuses costly documents before graphql-core's validation runs.

Why before validation: several validation rules (overlapping fields, and strawberry's own alias
and depth counters) walk fragment spreads without memoization, so a few hundred tokens of
fragments spreading each other twice per level, or hundreds of copies of one field, cost them
seconds. This guard walks the operation once, memoizing each fragment, and refuses early:

- a fragment cycle;
- more than MAX_FIELDS field selections once every fragment is expanded;
- more than MAX_SAME_KEY selections of one response key in one selection set;
- more than MAX_DIRECTIVES directive uses;
- `first` above the page size;
- a cost above MAX_COST. Cost: a leaf field costs 0; a field with a selection set costs
  1 + n x (cost of its selections), n being its `first` argument (from the literal, the variable
  or the argument's default), LIST_ESTIMATE for other list fields, and 1 for a list directly under
  a field that already took `first` (a connection's `edges`, `nodes`, `hits`).

Refusals are BAD_USER_INPUT errors whose extensions name the limit and its value.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import (
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    Visitor,
    get_named_type,
    is_list_type,
    is_non_null_type,
    visit,
)
from strawberry.extensions import SchemaExtension

from services.gateway import limits as L


def refusal(message: str, limit: str, maximum: int, nodes: Any = None) -> GraphQLError:
    return GraphQLError(
        message,
        nodes,
        extensions={"code": "BAD_USER_INPUT", "limit": limit, "max": maximum},
    )


class _DirectiveCounter(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
        self.count += 1


def _is_list(type_: Any) -> bool:
    if is_non_null_type(type_):
        type_ = type_.of_type
    return is_list_type(type_)


class _Cost:
    __slots__ = ("cost", "fields", "keys")

    def __init__(self) -> None:
        self.cost = 0
        self.fields = 0
        self.keys: Counter[str] = Counter()

    def add(self, other: _Cost) -> None:
        self.cost += other.cost
        self.fields += other.fields
        self.keys.update(other.keys)


class DocumentAnalysis:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: dict[str, Any] | None,
        operation: OperationDefinitionNode,
    ) -> None:
        self.schema = schema
        self.variables = variables or {}
        self.operation = operation
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self._memo: dict[tuple[str, bool], _Cost] = {}
        self._visiting: set[str] = set()

    def total(self) -> _Cost:
        root = self.schema.get_root_type(self.operation.operation)
        return self._selections(self.operation.selection_set, root, multiplied=False)

    def _selections(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None, multiplied: bool
    ) -> _Cost:
        out = _Cost()
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                out.keys[(sel.alias or sel.name).value] += 1
                out.add(self._field(sel, parent, multiplied))
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition
                scope = self.schema.get_type(cond.name.value) if cond else parent
                out.add(self._selections(sel.selection_set, scope, multiplied))
            elif isinstance(sel, FragmentSpreadNode):
                out.add(self._fragment(sel, multiplied))
        for key, n in out.keys.items():
            if n > L.MAX_SAME_KEY:
                raise refusal(
                    f"'{key}' is selected {n} times in one selection set; the limit is "
                    f"{L.MAX_SAME_KEY}",
                    "max_same_field",
                    L.MAX_SAME_KEY,
                )
        return out

    def _fragment(self, spread: FragmentSpreadNode, multiplied: bool) -> _Cost:
        name = spread.name.value
        memo = self._memo.get((name, multiplied))
        if memo is not None:
            return memo
        fragment = self.fragments.get(name)
        if fragment is None:
            return _Cost()  # unknown fragment: validation reports it
        if name in self._visiting:
            raise refusal(f"fragment '{name}' spreads itself", "fragment_cycle", 0, [spread])
        self._visiting.add(name)
        try:
            scope = self.schema.get_type(fragment.type_condition.name.value)
            result = self._selections(fragment.selection_set, scope, multiplied)
        finally:
            self._visiting.discard(name)
        self._memo[(name, multiplied)] = result
        return result

    def _field(self, node: FieldNode, parent: Any, multiplied: bool) -> _Cost:
        out = _Cost()
        out.fields = 1
        if node.selection_set is None:
            return out
        fields = getattr(parent, "fields", None) or {}
        field_def = fields.get(node.name.value)
        child = get_named_type(field_def.type) if field_def is not None else None
        factor, child_multiplied = 1, False
        if field_def is not None and "first" in field_def.args:
            first = self._first(node, field_def)
            if first > L.MAX_PAGE_SIZE:
                raise refusal(
                    f"first: {first} on '{node.name.value}' is above the page size limit of "
                    f"{L.MAX_PAGE_SIZE}",
                    "max_page_size",
                    L.MAX_PAGE_SIZE,
                    [node],
                )
            factor, child_multiplied = max(first, 1), True
        elif field_def is not None and _is_list(field_def.type) and not multiplied:
            factor = L.LIST_ESTIMATE
        inner = self._selections(node.selection_set, child, child_multiplied)
        out.cost = 1 + factor * inner.cost
        out.fields += inner.fields
        return out

    def _first(self, node: FieldNode, field_def: Any) -> int:
        value: Any = None
        # graphql-core 3.3 leaves `arguments` None on a field written without any.
        for arg in node.arguments or ():
            if arg.name.value != "first":
                continue
            if isinstance(arg.value, IntValueNode):
                value = int(arg.value.value)
            elif isinstance(arg.value, VariableNode):
                value = self._variable(arg.value.name.value)
            break
        else:
            value = field_def.args["first"].default_value
        return value if isinstance(value, int) and not isinstance(value, bool) else 1

    def _variable(self, name: str) -> Any:
        if name in self.variables:
            return self.variables[name]
        # None on an operation declaring no variables; validation reports the undefined one.
        for definition in self.operation.variable_definitions or ():
            if definition.variable.name.value == name and isinstance(
                definition.default_value, IntValueNode
            ):
                return int(definition.default_value.value)
        return None


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return ops[0] if len(ops) == 1 else None
    return next((o for o in ops if o.name and o.name.value == name), None)


def _one_operation_or_named(document: DocumentNode, provided_name: str | None) -> None:
    """The spec's GetOperation: a document of several operations needs an operationName.
    strawberry runs the first named one instead (its ExecutionContext.operation_name falls
    back to it). Several with an anonymous one are left to validation, which names it."""
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if provided_name is None and len(ops) > 1 and all(o.name for o in ops):
        raise GraphQLError(
            "Must provide operation name if query contains multiple operations.",
            extensions={"code": "BAD_USER_INPUT"},
        )


def check_document(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> None:
    """Raise a refusal naming the first limit the document goes past."""
    directives = _DirectiveCounter()
    visit(document, directives)
    if directives.count > L.MAX_DIRECTIVES:
        raise refusal(
            f"{directives.count} directives; the limit is {L.MAX_DIRECTIVES}",
            "max_directives",
            L.MAX_DIRECTIVES,
        )
    operation = _operation(document, operation_name)
    if operation is None:
        return  # no single operation to run: validation or execution reports it
    total = DocumentAnalysis(schema, document, variables, operation).total()
    if total.fields > L.MAX_FIELDS:
        raise refusal(
            f"{total.fields} field selections with fragments expanded; the limit is {L.MAX_FIELDS}",
            "max_fields",
            L.MAX_FIELDS,
        )
    if total.cost > L.MAX_COST:
        raise refusal(
            f"query cost {total.cost} is above the limit of {L.MAX_COST} (lower `first` or "
            "select fewer nested lists)",
            "max_cost",
            L.MAX_COST,
        )


class _PassedDocuments:
    """The documents that passed, so a client repeating its queries (the usual case) is not
    walked again. Keyed by the document's identity (the parser cache hands out the same
    object for the same text, and documents are immutable), the operation name and the
    integer variables (the only ones that change the cost: a non-integer `first` counts as 1).
    Refusals are not remembered: each is checked again."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._passed: OrderedDict[tuple[Any, ...], tuple[Any, DocumentNode]] = OrderedDict()

    @staticmethod
    def _key(
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: dict[str, Any] | None,
        name: str | None,
    ) -> tuple[Any, ...]:
        ints = tuple(
            sorted(
                (k, v)
                for k, v in (variables or {}).items()
                if isinstance(v, int) and not isinstance(v, bool)
            )
        )
        return (id(schema), id(document), name, ints)

    def check(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: dict[str, Any] | None,
        name: str | None,
    ) -> None:
        key = self._key(schema, document, variables, name)
        found = self._passed.get(key)
        if found is not None and found[0] is schema and found[1] is document:
            self._passed.move_to_end(key)
            return
        check_document(schema, document, variables, name)
        # Holding schema and document keeps their ids from being reused while remembered.
        self._passed[key] = (schema, document)
        if len(self._passed) > self.maxsize:
            self._passed.popitem(last=False)


_passed = _PassedDocuments(L.MAX_CACHED_DOCUMENTS)


class DocumentGuard(SchemaExtension):
    """Runs check_document before validation (listed before the validation extensions)."""

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None:
            _one_operation_or_named(ctx.graphql_document, ctx._provided_operation_name)
            _passed.check(
                ctx.schema._schema, ctx.graphql_document, ctx.variables, ctx.operation_name
            )
        yield
