"""Parser for Go's text/template: turns tokens into a node tree, checking what Go checks at parse time.

Parse-time errors Go reports (undefined variables, unknown functions, unmatched ``{{end}}``,
``{{break}}`` outside ``{{range}}``, non-executable pipelines) are reported here, with the line,
so ``create`` can reject a bad TEMPLATE before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ollamalike.template.golex import Token, lex, parse_number, template_error
from ollamalike.template.govalues import GoValue


@dataclass
class Text:
    text: str


@dataclass
class FieldNode:
    """``.A.B``: fields of dot."""
    chain: list[str]


@dataclass
class VarNode:
    """``$x.A.B``."""
    name: str
    chain: list[str]


@dataclass
class DotNode:
    pass


@dataclass
class IdentNode:
    """A function name."""
    name: str


@dataclass
class Literal:
    value: GoValue


@dataclass
class ChainNode:
    """``(pipeline).A.B``."""
    pipe: Pipe
    chain: list[str]


Arg = Union[FieldNode, VarNode, DotNode, IdentNode, Literal, ChainNode, "Pipe"]


@dataclass
class Command:
    args: list[Arg]
    line: int


@dataclass
class Pipe:
    line: int
    decls: list[str] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[Command] = field(default_factory=list)


@dataclass
class Action:
    pipe: Pipe


@dataclass
class Branch:
    kind: str  # if, range, with
    pipe: Pipe
    body: list[Node]
    else_body: list[Node] | None


@dataclass
class LoopControl:
    kind: str  # break, continue
    line: int


@dataclass
class TemplateCall:
    name: str
    pipe: Pipe | None
    line: int


Node = Text | Action | Branch | LoopControl | TemplateCall


@dataclass
class Tree:
    root: list[Node]
    defines: dict[str, list[Node]]


class Parser:
    def __init__(self, text: str, funcs: set[str]) -> None:
        self.tokens = lex(text)
        self.pos = 0
        self.funcs = funcs
        self.defines: dict[str, list[Node]] = {}
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def next(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, kind: str, context: str) -> Token:
        tok = self.next()
        if tok.kind != kind:
            raise template_error(tok.line, f"unexpected {describe(tok)} in {context}")
        return tok

    def parse(self) -> Tree:
        root, end = self.parse_list(top=True)
        if end is not None:
            raise template_error(end.line, f"unexpected {{{{{end.value}}}}}")
        return Tree(root, self.defines)

    def parse_list(self, top: bool = False) -> tuple[list[Node], Token | None]:
        """Nodes up to ``{{end}}``/``{{else}}`` (returned as the second item) or EOF."""
        nodes: list[Node] = []
        while True:
            tok = self.next()
            if tok.kind == "eof":
                if not top:
                    raise template_error(tok.line, "unexpected EOF")
                return nodes, None
            if tok.kind == "text":
                nodes.append(Text(tok.value))
                continue
            # tok is lbrace
            head = self.peek()
            if head.kind == "keyword" and head.value in ("end", "else"):
                if top:
                    raise template_error(head.line, f"unexpected {{{{{head.value}}}}}")
                return nodes, head
            node = self.parse_action()
            if node is not None:
                nodes.append(node)

    def parse_action(self) -> Node | None:
        tok = self.peek()
        if tok.kind == "keyword":
            kw = tok.value
            if kw in ("if", "range", "with"):
                self.next()
                return self.parse_branch(kw, tok.line)
            if kw in ("break", "continue"):
                self.next()
                if self.range_depth == 0:
                    raise template_error(tok.line, f"{{{{{kw}}}}} outside {{{{range}}}}")
                self.expect("rbrace", kw)
                return LoopControl(kw, tok.line)
            if kw == "template":
                self.next()
                return self.parse_template_call(tok.line)
            if kw in ("define", "block"):
                self.next()
                return self.parse_define(kw, tok.line)
        if tok.kind == "rbrace":
            raise template_error(tok.line, "missing value for command")
        pipe = self.parse_pipe("command", tok.line)
        return Action(pipe)

    def parse_branch(self, kind: str, line: int) -> Branch:
        saved_vars = len(self.vars)
        pipe = self.parse_pipe(kind, line, is_range=kind == "range")
        if kind == "range":
            self.range_depth += 1
        body, end = self.parse_list()
        if kind == "range":
            self.range_depth -= 1
        assert end is not None
        else_body: list[Node] | None = None
        self.next()  # end / else
        if end.value == "else":
            nxt = self.peek()
            if nxt.kind == "keyword" and nxt.value in ("if", "with"):
                # "else if"/"else with" nests a branch that shares our {{end}}
                self.next()
                else_body = [self.parse_branch(nxt.value, nxt.line)]
            else:
                self.expect("rbrace", "else")
                else_body, end2 = self.parse_list()
                assert end2 is not None
                self.next()
                if end2.value != "end":
                    raise template_error(end2.line, "expected end; found {{else}}")
                self.expect("rbrace", "end")
        else:
            self.expect("rbrace", "end")
        del self.vars[saved_vars:]
        return Branch(kind, pipe, body, else_body)

    def parse_template_call(self, line: int) -> TemplateCall:
        tok = self.next()
        if tok.kind != "string":
            raise template_error(tok.line, f"unexpected {describe(tok)} in template clause")
        if self.peek().kind == "rbrace":
            self.next()
            return TemplateCall(tok.value, None, line)
        return TemplateCall(tok.value, self.parse_pipe("template clause", line), line)

    def parse_define(self, kw: str, line: int) -> Node | None:
        tok = self.next()
        if tok.kind != "string":
            raise template_error(tok.line, f"unexpected {describe(tok)} in {kw} clause")
        name = tok.value
        pipe: Pipe | None = None
        if kw == "block":
            pipe = self.parse_pipe("block clause", line)
        else:
            self.expect("rbrace", "define clause")
        saved_vars, saved_depth = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        body, end = self.parse_list()
        self.vars, self.range_depth = saved_vars, saved_depth
        assert end is not None
        self.next()
        if end.value != "end":
            raise template_error(end.line, f"unexpected {{{{else}}}} in {kw}")
        self.expect("rbrace", "end")
        # Go allows redefining a template only when one of the two bodies is empty.
        if name in self.defines and not _is_empty(self.defines[name]):
            if not _is_empty(body):
                raise template_error(line, f"template: multiple definition of template {name!r}")
        else:
            self.defines[name] = body
        return TemplateCall(name, pipe, line) if kw == "block" else None

    def parse_pipe(self, context: str, line: int, is_range: bool = False) -> Pipe:
        pipe = Pipe(line)
        # declarations: $x := / $x = / $i, $e :=
        save = self.pos
        decls: list[str] = []
        while self.peek().kind == "var":
            var_tok = self.next()
            if self.peek().kind == "chain":
                break
            decls.append(var_tok.value)
            nxt = self.peek()
            if nxt.kind in ("declare", "assign"):
                self.next()
                pipe.is_assign = nxt.kind == "assign"
                if pipe.is_assign and len(decls) == 1:
                    if decls[0] not in self.vars:
                        raise template_error(var_tok.line, f'undefined variable "{decls[0]}"')
                elif pipe.is_assign:
                    for d in decls:
                        if d not in self.vars:
                            raise template_error(var_tok.line, f'undefined variable "{d}"')
                if len(decls) > 1 and not is_range and not pipe.is_assign:
                    raise template_error(var_tok.line, "too many declarations in command")
                pipe.decls = decls
                break
            if nxt.kind == "comma" and (is_range or len(decls) == 1):
                if not is_range:
                    raise template_error(nxt.line, "too many declarations in command")
                self.next()
                if len(decls) >= 2:
                    raise template_error(nxt.line, "too many declarations in range")
                continue
            break
        if not pipe.decls:
            self.pos = save
        while True:
            tok = self.peek()
            if tok.kind in ("rbrace", "rparen"):
                if tok.kind == "rbrace":
                    self.next()
                if not pipe.cmds:
                    raise template_error(tok.line, f"missing value for {context}")
                break
            pipe.cmds.append(self.parse_command())
            tok = self.peek()
            if tok.kind == "pipe":
                self.next()
                if self.peek().kind in ("rbrace", "rparen"):
                    raise template_error(tok.line, "missing command after '|'")
        if not pipe.is_assign:
            for d in pipe.decls:
                self.vars.append(d)
        # Go rejects only constants after a "|" at parse time; other mistakes fail when executed,
        # so a template Ollama accepts is accepted here too.
        for i, cmd in enumerate(pipe.cmds):
            if i > 0 and isinstance(cmd.args[0], (Literal, DotNode)):
                raise template_error(cmd.line, f"non executable command in pipeline stage {i + 1}")
        return pipe

    def parse_command(self) -> Command:
        line = self.peek().line
        args: list[Arg] = []
        while True:
            tok = self.peek()
            if tok.kind in ("rbrace", "rparen", "pipe"):
                break
            args.append(self.parse_operand())
        if not args:
            raise template_error(line, "empty command")
        if not isinstance(args[0], IdentNode) and len(args) > 1 and isinstance(args[0], Literal):
            raise template_error(line, f"can't give argument to non-function {_arg_text(args[0])}")
        return Command(args, line)

    def parse_operand(self) -> Arg:
        tok = self.next()
        if tok.kind == "field":
            chain = [tok.value]
            chain += self._chain()
            return FieldNode(chain)
        if tok.kind == "var":
            if tok.value not in self.vars:
                raise template_error(tok.line, f'undefined variable "{tok.value}"')
            return VarNode(tok.value, self._chain())
        if tok.kind == "dot":
            return DotNode()
        if tok.kind == "ident":
            if tok.value not in self.funcs:
                raise template_error(tok.line, f'function "{tok.value}" not defined')
            if self.peek().kind == "chain":
                raise template_error(tok.line, f"unexpected . after term {tok.value!r}")
            return IdentNode(tok.value)
        if tok.kind == "string":
            return Literal(tok.value)
        if tok.kind == "char":
            return Literal(ord(tok.value))
        if tok.kind == "number":
            return Literal(parse_number(tok.value, tok.line))
        if tok.kind == "keyword" and tok.value in ("true", "false"):
            return Literal(tok.value == "true")
        if tok.kind == "keyword" and tok.value == "nil":
            return Literal(None)
        if tok.kind == "lparen":
            pipe = self.parse_pipe("parenthesized pipeline", tok.line)
            self.expect("rparen", "parenthesized pipeline")
            chain = self._chain()
            return ChainNode(pipe, chain) if chain else pipe
        raise template_error(tok.line, f"unexpected {describe(tok)} in operand")

    def _chain(self) -> list[str]:
        chain: list[str] = []
        while self.peek().kind == "chain":
            chain.append(self.next().value)
        return chain


def _is_empty(nodes: list[Node]) -> bool:
    return all(isinstance(n, Text) and not n.text.strip() for n in nodes)


def _arg_text(arg: Arg) -> str:
    if isinstance(arg, Literal):
        return repr(arg.value) if isinstance(arg.value, str) else str(arg.value)
    return type(arg).__name__


def describe(tok: Token) -> str:
    if tok.kind == "rbrace":
        return '"}}"'
    if tok.kind == "eof":
        return "EOF"
    return f"<{tok.value}>"


def parse_tree(text: str, funcs: set[str]) -> Tree:
    return Parser(text, funcs).parse()
