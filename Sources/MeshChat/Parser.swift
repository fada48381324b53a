/// Builds the statement tree from tokens, following jinja2's parser rule for rule (operator precedence, where
/// tuples are allowed, when `is` takes an argument without parentheses) so that every template parses the same.
struct Parser {
    private let tokens: [Token]
    private var index = 0
    /// Tags that may end the blocks being parsed, innermost last, for error messages.
    private var openTags: [[String]] = []
    private var loopDepth = 0
    private var nesting = 0

    static func parse(_ source: String) throws -> [Statement] {
        var parser = Parser(tokens: try Lexer.tokenize(source))
        let body = try parser.subparse(until: [])
        try NameCheck.check(body)
        return body
    }

    private init(tokens: [Token]) { self.tokens = tokens }

    // MARK: Token stream

    private var current: Token { tokens[index] }
    private var next: Token { tokens[min(index + 1, tokens.count - 1)] }

    @discardableResult
    private mutating func advance() -> Token {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private func isOp(_ op: String, _ token: Token? = nil) -> Bool { (token ?? current).kind == .op(op) }
    private func isName(_ name: String, _ token: Token? = nil) -> Bool { (token ?? current).kind == .name(name) }

    private mutating func skipOp(_ op: String) -> Bool {
        guard isOp(op) else { return false }
        advance()
        return true
    }

    private mutating func skipName(_ name: String) -> Bool {
        guard isName(name) else { return false }
        advance()
        return true
    }

    private func fail(_ message: String, _ token: Token? = nil) -> JinjaError {
        .syntax(message, line: (token ?? current).line)
    }

    private func describe(_ token: Token) -> String {
        switch token.kind {
        case .text: "template data"
        case .variableBegin: "begin of print statement"
        case .variableEnd: "end of print statement"
        case .blockBegin: "begin of statement block"
        case .blockEnd: "end of statement block"
        case .name(let name): name
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .op(let op): op
        case .end: "end of template"
        }
    }

    private mutating func expectOp(_ op: String) throws {
        guard skipOp(op) else { throw fail("expected '\(op)', got '\(describe(current))'") }
    }

    private mutating func expectName() throws -> String {
        guard case .name(let name) = current.kind else {
            throw fail("expected a name, got '\(describe(current))'")
        }
        advance()
        return name
    }

    private mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else {
            throw fail("expected end of statement block, got '\(describe(current))'")
        }
        advance()
    }

    // MARK: Statements

    /// Parses template data, `{{ }}` and statements until a block tag named in `endTags` (left as the current
    /// token) or the end of the template.
    private mutating func subparse(until endTags: [String]) throws -> [Statement] {
        var body: [Statement] = []
        openTags.append(endTags)
        defer { openTags.removeLast() }
        while true {
            let token = current
            switch token.kind {
            case .text(let text):
                body.append(Statement(kind: .text(text), line: token.line))
                advance()
            case .variableBegin:
                advance()
                let expression = try parseTuple()
                guard current.kind == .variableEnd else {
                    throw fail("expected end of print statement, got '\(describe(current))'")
                }
                advance()
                body.append(Statement(kind: .output(expression), line: token.line))
            case .blockBegin:
                advance()
                if case .name(let name) = current.kind, endTags.contains(name) { return body }
                body.append(contentsOf: try parseStatement())
                try expectBlockEnd()
            case .end:
                guard endTags.isEmpty else {
                    throw fail("unexpected end of template; expected "
                               + endTags.map { "'\($0)'" }.joined(separator: " or "))
                }
                return body
            default:
                throw fail("unexpected '\(describe(token))'")
            }
        }
    }

    /// jinja2's `parse_statements`: the rest of the opening tag, then the body up to one of `endTags`.
    private mutating func parseBody(until endTags: [String], dropEndTag: Bool = false) throws -> [Statement] {
        _ = skipOp(":")
        try expectBlockEnd()
        let body = try subparse(until: endTags)
        if dropEndTag { advance() }
        return body
    }

    private mutating func parseStatement() throws -> [Statement] {
        let token = current
        guard case .name(let tag) = token.kind else { throw fail("tag name expected") }
        let line = token.line
        func statement(_ kind: StatementKind) -> [Statement] { [Statement(kind: kind, line: line)] }
        switch tag {
        case "if": return statement(try parseIf())
        case "for": return statement(try parseFor())
        case "set": return statement(try parseSet())
        case "macro": return statement(.macro(try parseMacro()))
        case "filter":
            advance()
            let filters = try parseFilterChain(startInline: true)
            return statement(.filterBlock(filters, body: try parseBody(until: ["endfilter"], dropEndTag: true)))
        case "with": return statement(try parseWith())
        case "generation":
            // The body becomes a macro (jinja2's `caller`), so loop controls cannot reach an enclosing loop.
            advance()
            let savedLoopDepth = loopDepth
            loopDepth = 0
            defer { loopDepth = savedLoopDepth }
            return statement(.generation(try parseBody(until: ["endgeneration"], dropEndTag: true)))
        case "break", "continue":
            guard loopDepth > 0 else { throw fail("'\(tag)' outside of a loop") }
            advance()
            return statement(tag == "break" ? .breakLoop : .continueLoop)
        case "print":
            advance()
            var outputs: [Statement] = []
            while current.kind != .blockEnd {
                if !outputs.isEmpty { try expectOp(",") }
                outputs.append(Statement(kind: .output(try parseExpression()), line: line))
            }
            return outputs
        case "call", "block", "extends", "include", "import", "from", "autoescape":
            throw JinjaError.unsupported("the '\(tag)' tag", line: line)
        default:
            let expected = openTags.last ?? []
            if expected.isEmpty { throw fail("unknown tag '\(tag)'") }
            throw fail("unknown tag '\(tag)'; expected " + expected.map { "'\($0)'" }.joined(separator: " or "))
        }
    }

    private mutating func parseIf() throws -> StatementKind {
        advance()
        var branches: [(test: Expression, body: [Statement])] = []
        while true {
            let test = try parseTuple(withCondition: false)
            let body = try parseBody(until: ["elif", "else", "endif"])
            branches.append((test, body))
            let tag = advance()
            if isName("elif", tag) { continue }
            if isName("else", tag) {
                return .ifBlock(branches: branches, otherwise: try parseBody(until: ["endif"], dropEndTag: true))
            }
            return .ifBlock(branches: branches, otherwise: [])
        }
    }

    private mutating func parseFor() throws -> StatementKind {
        advance()
        let target = try parseAssignTarget(extraEndNames: ["in"])
        guard skipName("in") else { throw fail("expected 'in', got '\(describe(current))'") }
        let iterable = try parseTuple(withCondition: false, extraEndNames: ["recursive"])
        let condition = skipName("if") ? try parseExpression() : nil
        if isName("recursive") { throw JinjaError.unsupported("recursive loops", line: current.line) }
        loopDepth += 1
        let bodyStart = index
        let body = try parseBody(until: ["endfor", "else"])
        let usesLoopVariable = tokens[bodyStart..<index].contains { $0.kind == .name("loop") }
        loopDepth -= 1
        var otherwise: [Statement] = []
        if isName("else", advance()) { otherwise = try parseBody(until: ["endfor"], dropEndTag: true) }
        return .forLoop(ForLoop(target: target, iterable: iterable, condition: condition, body: body,
                                otherwise: otherwise, usesLoopVariable: usesLoopVariable))
    }

    private mutating func parseSet() throws -> StatementKind {
        advance()
        let target = try parseAssignTarget(allowNamespace: true)
        if skipOp("=") { return .set(target, try parseTuple()) }
        let filters = try parseFilterChain(startInline: false)
        return .setBlock(target, filters: filters, body: try parseBody(until: ["endset"], dropEndTag: true))
    }

    private mutating func parseWith() throws -> StatementKind {
        advance()
        var assignments: [(AssignTarget, Expression)] = []
        while current.kind != .blockEnd {
            if !assignments.isEmpty { try expectOp(",") }
            let target = try parseAssignTarget()
            try expectOp("=")
            assignments.append((target, try parseExpression()))
        }
        return .with(assignments: assignments, body: try parseBody(until: ["endwith"], dropEndTag: true))
    }

    private mutating func parseMacro() throws -> MacroDefinition {
        advance()
        let name = try expectName()
        try expectOp("(")
        var parameters: [(name: String, defaultValue: Expression?)] = []
        while !isOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            let parameter = try expectName()
            if skipOp("=") {
                parameters.append((parameter, try parseExpression()))
            } else if parameters.contains(where: { $0.defaultValue != nil }) {
                throw fail("non-default argument follows default argument")
            } else {
                parameters.append((parameter, nil))
            }
        }
        try expectOp(")")
        let savedLoopDepth = loopDepth
        loopDepth = 0
        let bodyStart = index
        let body = try parseBody(until: ["endmacro"], dropEndTag: true)
        loopDepth = savedLoopDepth
        let mentioned = Set(tokens[bodyStart..<index].compactMap { token -> String? in
            if case .name(let name) = token.kind { return name }
            return nil
        })
        return MacroDefinition(name: name, parameters: parameters, body: body,
                               takesVarargs: mentioned.contains("varargs"), takesKwargs: mentioned.contains("kwargs"))
    }

    // MARK: Assignment targets

    private mutating func parseAssignTarget(allowNamespace: Bool = false,
                                            extraEndNames: Set<String> = []) throws -> AssignTarget {
        var targets: [AssignTarget] = []
        var isTuple = false
        while true {
            if !targets.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEndNames) { break }
            targets.append(try parseTargetAtom(allowNamespace: allowNamespace))
            guard isOp(",") else { break }
            isTuple = true
        }
        if !isTuple, let single = targets.first { return single }
        guard !targets.isEmpty else { throw fail("expected an assignment target, got '\(describe(current))'") }
        return .tuple(targets)
    }

    private mutating func parseTargetAtom(allowNamespace: Bool) throws -> AssignTarget {
        let token = current
        if case .name(let name) = token.kind {
            guard !["true", "false", "True", "False", "none", "None"].contains(name) else {
                throw fail("can't assign to '\(name)'")
            }
            advance()
            if allowNamespace, skipOp(".") { return .namespaceAttribute(name, try expectName()) }
            return .name(name)
        }
        if skipOp("(") {
            let target = try parseAssignTarget(extraEndNames: [])
            try expectOp(")")
            return target
        }
        throw fail("can't assign to '\(describe(token))'")
    }

    // MARK: Expressions

    private func isTupleEnd(_ extraEndNames: Set<String>) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .op(")"): return true
        case .name(let name): return extraEndNames.contains(name)
        default: return false
        }
    }

    /// An expression, or a tuple if commas separate several (`{{ a, b }}`, `{% set x = 1, 2 %}`).
    private mutating func parseTuple(withCondition: Bool = true, extraEndNames: Set<String> = [],
                                     explicitParentheses: Bool = false) throws -> Expression {
        let line = current.line
        var items: [Expression] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEndNames) { break }
            items.append(withCondition ? try parseExpression() : try parseOr())
            guard isOp(",") else { break }
            isTuple = true
        }
        if !isTuple {
            if let single = items.first { return single }
            if !explicitParentheses { throw fail("expected an expression, got '\(describe(current))'") }
        }
        return Expression(kind: .tuple(items), line: line)
    }

    private mutating func parseExpression() throws -> Expression {
        nesting += 1
        defer { nesting -= 1 }
        guard nesting < 200 else { throw fail("expression nested too deeply") }
        let line = current.line
        var expression = try parseOr()
        while skipName("if") {
            let test = try parseOr()
            let otherwise = skipName("else") ? try parseExpression() : nil
            expression = Expression(kind: .conditional(test: test, then: expression, otherwise: otherwise), line: line)
        }
        return expression
    }

    private mutating func parseOr() throws -> Expression {
        var left = try parseAnd()
        while isName("or") {
            let line = advance().line
            left = Expression(kind: .or(left, try parseAnd()), line: line)
        }
        return left
    }

    private mutating func parseAnd() throws -> Expression {
        var left = try parseNot()
        while isName("and") {
            let line = advance().line
            left = Expression(kind: .and(left, try parseNot()), line: line)
        }
        return left
    }

    private mutating func parseNot() throws -> Expression {
        guard isName("not") else { return try parseCompare() }
        let line = advance().line
        return Expression(kind: .not(try parseNot()), line: line)
    }

    private mutating func parseCompare() throws -> Expression {
        let line = current.line
        let first = try parseMath1()
        var operations: [(CompareOperator, Expression)] = []
        while true {
            if case .op(let op) = current.kind, let comparison = CompareOperator(rawValue: op),
               comparison != .contains, comparison != .notContains {
                advance()
                operations.append((comparison, try parseMath1()))
            } else if skipName("in") {
                operations.append((.contains, try parseMath1()))
            } else if isName("not"), isName("in", next) {
                advance()
                advance()
                operations.append((.notContains, try parseMath1()))
            } else {
                break
            }
        }
        return operations.isEmpty ? first : Expression(kind: .compare(first, operations), line: line)
    }

    private mutating func parseMath1() throws -> Expression {
        var left = try parseConcat()
        while isOp("+") || isOp("-") {
            let token = advance()
            let op: BinaryOperator = isOp("+", token) ? .add : .subtract
            left = Expression(kind: .binary(op, left, try parseConcat()), line: token.line)
        }
        return left
    }

    private mutating func parseConcat() throws -> Expression {
        let line = current.line
        var operands = [try parseMath2()]
        while skipOp("~") { operands.append(try parseMath2()) }
        return operands.count == 1 ? operands[0] : Expression(kind: .concat(operands), line: line)
    }

    private mutating func parseMath2() throws -> Expression {
        var left = try parsePow()
        while case .op(let op) = current.kind, let binary = BinaryOperator(rawValue: op),
              [.multiply, .divide, .floorDivide, .modulo].contains(binary) {
            let line = advance().line
            left = Expression(kind: .binary(binary, left, try parsePow()), line: line)
        }
        return left
    }

    private mutating func parsePow() throws -> Expression {
        var left = try parseUnary()
        while isOp("**") {
            let line = advance().line
            left = Expression(kind: .binary(.power, left, try parseUnary()), line: line)
        }
        return left
    }

    /// Unary minus binds tighter than `**` and filters apply to the negated value: `-x|abs` is `abs(-x)`.
    private mutating func parseUnary(withFilters: Bool = true) throws -> Expression {
        let line = current.line
        var expression: Expression
        if skipOp("-") {
            expression = Expression(kind: .negate(try parseUnary(withFilters: false)), line: line)
        } else if skipOp("+") {
            expression = Expression(kind: .plus(try parseUnary(withFilters: false)), line: line)
        } else {
            expression = try parsePrimary()
        }
        expression = try parsePostfix(expression)
        if withFilters { expression = try parseFilterExpression(expression) }
        return expression
    }

    private mutating func parsePrimary() throws -> Expression {
        let token = current
        let line = token.line
        switch token.kind {
        case .name(let name):
            advance()
            switch name {
            case "true", "True": return Expression(kind: .literal(.bool(true)), line: line)
            case "false", "False": return Expression(kind: .literal(.bool(false)), line: line)
            case "none", "None": return Expression(kind: .literal(.none), line: line)
            default: return Expression(kind: .name(name), line: line)
            }
        case .string(var text):
            advance()
            while case .string(let more) = current.kind {
                text += more
                advance()
            }
            return Expression(kind: .literal(.string(text)), line: line)
        case .integer(let number):
            advance()
            return Expression(kind: .literal(.int(number)), line: line)
        case .float(let number):
            advance()
            return Expression(kind: .literal(.double(number)), line: line)
        case .op("("):
            advance()
            nesting += 1
            defer { nesting -= 1 }
            let inner = try parseTuple(explicitParentheses: true)
            try expectOp(")")
            return inner
        case .op("["):
            advance()
            var items: [Expression] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return Expression(kind: .list(items), line: line)
        case .op("{"):
            advance()
            var pairs: [(key: Expression, value: Expression)] = []
            while !isOp("}") {
                if !pairs.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
            }
            try expectOp("}")
            return Expression(kind: .dict(pairs), line: line)
        default:
            throw fail("unexpected '\(describe(token))'")
        }
    }

    private mutating func parsePostfix(_ base: Expression) throws -> Expression {
        var expression = base
        while true {
            if isOp(".") || isOp("[") {
                expression = try parseSubscript(expression)
            } else if isOp("(") {
                let line = current.line
                expression = Expression(kind: .call(expression, try parseCallArguments()), line: line)
            } else {
                return expression
            }
        }
    }

    private mutating func parseFilterExpression(_ base: Expression) throws -> Expression {
        var expression = base
        while true {
            if isOp("|") {
                for filter in try parseFilterChain(startInline: false) {
                    expression = Expression(kind: .filter(expression, filter), line: filter.line)
                }
            } else if isName("is") {
                expression = try parseTest(expression)
            } else if isOp("(") {
                let line = current.line
                expression = Expression(kind: .call(expression, try parseCallArguments()), line: line)
            } else {
                return expression
            }
        }
    }

    private mutating func parseSubscript(_ base: Expression) throws -> Expression {
        let token = advance()
        if isOp(".", token) {
            let attribute = advance()
            switch attribute.kind {
            case .name(let name): return Expression(kind: .attribute(base, name), line: token.line)
            case .integer(let number):
                let key = Expression(kind: .literal(.int(number)), line: attribute.line)
                return Expression(kind: .item(base, key), line: token.line)
            default: throw fail("expected name or number", attribute)
            }
        }
        var keys: [Expression] = []
        while !isOp("]") {
            if !keys.isEmpty { try expectOp(",") }
            keys.append(try parseSubscribed())
        }
        try expectOp("]")
        let key = keys.count == 1 ? keys[0] : Expression(kind: .tuple(keys), line: token.line)
        return Expression(kind: .item(base, key), line: token.line)
    }

    private mutating func parseSubscribed() throws -> Expression {
        let line = current.line
        var parts: [Expression?] = []
        if skipOp(":") {
            parts.append(nil)
        } else {
            let expression = try parseExpression()
            guard skipOp(":") else { return expression }
            parts.append(expression)
        }
        let atEnd = { (parser: Parser) in parser.isOp("]") || parser.isOp(",") }
        if isOp(":") || atEnd(self) {
            parts.append(nil)
        } else {
            parts.append(try parseExpression())
        }
        if skipOp(":") {
            parts.append(atEnd(self) ? nil : try parseExpression())
        } else {
            parts.append(nil)
        }
        return Expression(kind: .slice(start: parts[0], stop: parts[1], step: parts[2]), line: line)
    }

    private mutating func parseCallArguments() throws -> Arguments {
        let open = current
        try expectOp("(")
        var arguments = Arguments()
        var needsComma = false
        let invalid = fail("invalid syntax for function call expression", open)
        while !isOp(")") {
            if needsComma {
                try expectOp(",")
                if isOp(")") { break }
            }
            if skipOp("*") {
                guard arguments.spreadPositional == nil, arguments.spreadKeyword == nil else { throw invalid }
                arguments.spreadPositional = try parseExpression()
            } else if skipOp("**") {
                guard arguments.spreadKeyword == nil else { throw invalid }
                arguments.spreadKeyword = try parseExpression()
            } else if case .name(let name) = current.kind, isOp("=", next) {
                guard arguments.spreadKeyword == nil else { throw invalid }
                advance()
                advance()
                arguments.keyword.append((name, try parseExpression()))
            } else {
                guard arguments.spreadPositional == nil, arguments.spreadKeyword == nil,
                      arguments.keyword.isEmpty else { throw invalid }
                arguments.positional.append(try parseExpression())
            }
            needsComma = true
        }
        try expectOp(")")
        return arguments
    }

    /// `|name(args)|name ...`; with `startInline` the first filter has no leading `|` (`{% filter trim %}`).
    private mutating func parseFilterChain(startInline: Bool) throws -> [FilterCall] {
        var filters: [FilterCall] = []
        var inline = startInline
        while isOp("|") || inline {
            if !inline { advance() }
            inline = false
            let line = current.line
            var name = try expectName()
            while skipOp(".") { name += "." + (try expectName()) }
            let arguments = isOp("(") ? try parseCallArguments() : Arguments()
            filters.append(FilterCall(name: name, arguments: arguments, line: line))
        }
        return filters
    }

    private mutating func parseTest(_ subject: Expression) throws -> Expression {
        let line = advance().line
        let negated = skipName("not")
        var name = try expectName()
        while skipOp(".") { name += "." + (try expectName()) }
        var arguments = Arguments()
        if isOp("(") {
            arguments = try parseCallArguments()
        } else if takesBareTestArgument {
            if isName("is") { throw fail("You cannot chain multiple tests with is") }
            arguments.positional = [try parsePostfix(try parsePrimary())]
        }
        let test = Expression(kind: .test(subject, name: name, arguments), line: line)
        return negated ? Expression(kind: .not(test), line: line) : test
    }

    /// jinja2 reads `x is divisibleby 3` with one argument when a literal, name or bracket follows the test name.
    private var takesBareTestArgument: Bool {
        switch current.kind {
        case .name(let name): return !["else", "or", "and"].contains(name)
        case .string, .integer, .float, .op("["), .op("{"): return true
        default: return false
        }
    }
}
