// Prints the declarative structure of a Jenkinsfile as JSON, read with Groovy's own
// parser (no hand-written one): the top-level sections of `pipeline {}`, every stage
// in order with the sections and steps it contains, and the `sh` scripts anywhere.
// ci/tests/test_cicd.py asserts on it, because npm-groovy-lint checks Groovy syntax
// only, not the declarative model (an unknown directive or a stage without `steps`
// passes it).
//
//   java -cp groovy-4.0.33.jar groovy.ui.GroovyMain ci/jenkinsfile-structure.groovy Jenkinsfile
import groovy.json.JsonOutput
import org.codehaus.groovy.ast.ASTNode
import org.codehaus.groovy.ast.CodeVisitorSupport
import org.codehaus.groovy.ast.builder.AstBuilder
import org.codehaus.groovy.ast.expr.ArgumentListExpression
import org.codehaus.groovy.ast.expr.BinaryExpression
import org.codehaus.groovy.ast.expr.ClosureExpression
import org.codehaus.groovy.ast.expr.ConstantExpression
import org.codehaus.groovy.ast.expr.Expression
import org.codehaus.groovy.ast.expr.GStringExpression
import org.codehaus.groovy.ast.expr.ListExpression
import org.codehaus.groovy.ast.expr.MapExpression
import org.codehaus.groovy.ast.expr.MethodCallExpression
import org.codehaus.groovy.ast.expr.TupleExpression
import org.codehaus.groovy.ast.expr.VariableExpression
import org.codehaus.groovy.ast.stmt.BlockStatement
import org.codehaus.groovy.ast.stmt.ExpressionStatement
import org.codehaus.groovy.control.CompilePhase

if (args.length != 1) {
    System.err.println('usage: jenkinsfile-structure.groovy JENKINSFILE')
    System.exit(2)
}
List<ASTNode> nodes = new AstBuilder().buildFromString(CompilePhase.CONVERSION, false, new File(args[0]).text)

/** The method calls that are direct statements of a closure body, in order. */
List<MethodCallExpression> calls(ClosureExpression c) {
    def code = c.code
    List<MethodCallExpression> out = []
    if (code instanceof BlockStatement) {
        code.statements.each { s ->
            if (s instanceof ExpressionStatement && s.expression instanceof MethodCallExpression) {
                out << (MethodCallExpression) s.expression
            }
        }
    }
    out
}

ClosureExpression closureArg(MethodCallExpression m) {
    def a = m.arguments
    if (a instanceof ArgumentListExpression) {
        return a.expressions.find { it instanceof ClosureExpression } as ClosureExpression
    }
    null
}

String firstString(MethodCallExpression m) {
    def a = m.arguments
    if (a instanceof ArgumentListExpression && a.expressions) {
        def e = a.expressions[0]
        if (e instanceof ConstantExpression) { return e.value as String }
        if (e instanceof GStringExpression) { return e.text }
    }
    null
}

/**
 * An expression as data, for ci/jenkins-pipeline.py, which runs the pipeline's steps:
 * constants as themselves, a step or directive call as [call, args, named, body],
 * lists and maps as such, `x = v` as [assign, value], a GString as [gstring], and
 * anything else as [expr: its source text], which the runner refuses unless it
 * knows the form (`params.NAME`).
 */
def describe(Expression e) {
    if (e instanceof ConstantExpression) { return e.value }
    if (e instanceof GStringExpression) { return [gstring: e.text] }
    if (e instanceof ListExpression) { return e.expressions.collect { describe(it) } }
    if (e instanceof MapExpression) {
        return e.mapEntryExpressions.collectEntries { [(it.keyExpression.text): describe(it.valueExpression)] }
    }
    if (e instanceof ClosureExpression) { return statementsOf(e) }
    if (e instanceof BinaryExpression && e.operation.text == '=') {
        return [assign: e.leftExpression.text, value: describe(e.rightExpression)]
    }
    if (e instanceof MethodCallExpression) {
        def positional = []
        Map named = [:]
        def closure = null
        def a = e.arguments
        def items = a instanceof TupleExpression ? a.expressions : [a]
        items.each { x ->
            if (x instanceof MapExpression) { named.putAll(describe(x) as Map) }
            else if (x instanceof ClosureExpression) { closure = statementsOf(x) }
            else { positional << describe(x) }
        }
        return [call: e.methodAsString, args: positional, named: named, body: closure]
    }
    [expr: e.text]
}

/** The statements of a closure, described, in order. */
List statementsOf(ClosureExpression c) {
    def code = c.code
    def statements = code instanceof BlockStatement ? code.statements : [code]
    statements.collect { s -> s instanceof ExpressionStatement ? describe(s.expression) : [expr: s.text] }
}

/** Every method call anywhere below a node, in source order. */
List<MethodCallExpression> callsBelow(ASTNode node) {
    List<MethodCallExpression> found = []
    node.visit(new CodeVisitorSupport() {
        @Override
        void visitMethodCallExpression(MethodCallExpression call) {
            found << call
            super.visitMethodCallExpression(call)
        }
    })
    found
}

/** Every `sh` call anywhere below a node, with its script text. */
List<String> shScripts(ASTNode node) {
    callsBelow(node).findAll { it.methodAsString == 'sh' }.collect { firstString(it) }
}

/** Names of every method call below a node (the steps and wrappers used). */
List<String> stepNames(ASTNode node) {
    callsBelow(node)*.methodAsString
}

/**
 * What an `agent` section asks for: `any`, `none`, or a map naming the kind
 * (`label`, `node`, `docker`, `dockerfile`, `kubernetes`) and its label, if any.
 */
def agentOf(MethodCallExpression agent) {
    if (agent == null) { return null }
    def a = agent.arguments
    if (a instanceof ArgumentListExpression && a.expressions) {
        def e = a.expressions[0]
        if (e instanceof VariableExpression) { return e.name }
        if (e instanceof ClosureExpression) {
            def kind = calls(e).find()
            if (kind == null) { return [kind: 'empty'] }
            if (kind.methodAsString == 'label') { return [kind: 'label', label: firstString(kind)] }
            def body = closureArg(kind)
            def label = body ? calls(body).find { it.methodAsString == 'label' } : null
            return [kind: kind.methodAsString, label: label ? firstString(label) : null]
        }
    }
    [kind: 'unknown']
}

def pipeline = nodes.findResult { n ->
    if (n instanceof BlockStatement) {
        n.statements.findResult { s ->
            (s instanceof ExpressionStatement && s.expression instanceof MethodCallExpression
                && s.expression.methodAsString == 'pipeline') ? s.expression : null
        }
    }
} as MethodCallExpression
if (pipeline == null) {
    System.err.println('no `pipeline { }` block at the top level')
    System.exit(1)
}
def sections = calls(closureArg(pipeline))
def result = [sections: sections*.methodAsString, stages: [], post: [:], sh: shScripts(pipeline),
              agent: agentOf(sections.find { it.methodAsString == 'agent' })]
// What ci/jenkins-pipeline.py needs to run the pipeline: the directives as data.
['parameters', 'environment', 'options'].each { name ->
    def section = sections.find { it.methodAsString == name }
    result[name] = section ? statementsOf(closureArg(section)) : []
}
def postSection = sections.find { it.methodAsString == 'post' }
result.postRun = postSection ? calls(closureArg(postSection)).collectEntries { [(it.methodAsString): statementsOf(closureArg(it))] } : [:]
def stages = sections.find { it.methodAsString == 'stages' }
if (stages != null) {
    calls(closureArg(stages)).each { st ->
        def body = closureArg(st)
        def inner = body ? calls(body) : []
        def steps = inner.find { it.methodAsString == 'steps' }
        result.stages << [
            call: st.methodAsString,
            name: firstString(st),
            sections: inner*.methodAsString,
            steps: steps ? stepNames(steps) : [],
            sh: body ? shScripts(body) : [],
            agent: agentOf(inner.find { it.methodAsString == 'agent' }),
            run: steps ? statementsOf(closureArg(steps)) : [],
            when: inner.find { it.methodAsString == 'when' }?.with { statementsOf(closureArg(it)) },
        ]
    }
}
def post = sections.find { it.methodAsString == 'post' }
if (post != null) {
    calls(closureArg(post)).each { cond ->
        result.post[cond.methodAsString] = stepNames(cond).findAll { it != cond.methodAsString }
    }
}
println JsonOutput.prettyPrint(JsonOutput.toJson(result))
