import Foundation
@testable import MeshChat
import XCTest

/// Small templates that each exercise one corner of jinja2 (whitespace control, scoping, filters, Python
/// formatting ...), rendered by MeshChat and by Python jinja2 with the same variables.
final class SnippetParityTests: XCTestCase {
    static let messages: JinjaValue = [
        ["role": "system", "content": "sys"],
        ["role": "user", "content": "hi"],
        ["role": "assistant", "content": "yo", "tool_calls": [
            ["id": "call12345", "type": "function",
             "function": ["name": "f", "arguments": ["b": 1, "a": [1.5, "é"]]]],
        ]],
    ]

    static let variables: JinjaDict = {
        guard case .dict(let dict) = try? JinjaValue(json: Data(#"""
        {"s": "Hello, World! Ünïcödé 👋 e\u0301", "i": 42, "neg": -7, "f": 2.5, "big": 1e16, "tiny": 1e-7,
         "zero": 0, "t": true, "n": null, "l": [3, 1, 2], "words": ["banana", "Apple", "cherry", "apple"],
         "d": {"b": 1, "a": [1, 2], "c": {"x": "y"}, "items": "shadow", "e": null},
         "people": [{"name": "Ann", "age": 30, "tags": ["x"]}, {"name": "bob", "age": 25},
                    {"name": "Cid", "age": 30, "nick": "C"}],
         "text": "  line one\n\n  line two  \n", "nested": {"k": [{"v": 1}, {"v": 2.0}]},
         "json_text": "{\"a\": 1}"}
        """#.utf8)) else { return JinjaDict() }
        return dict
    }()

    /// Templates that jinja2 renders; MeshChat must produce the same text.
    static let rendering: [String] = [
        // Whitespace control, trim_blocks and lstrip_blocks.
        "a  {% if true %}\n  b\n  {% endif %}\nc",
        "  {% for x in l %}\n    {{ x }}\n  {% endfor %}\nend",
        "a {%- if true -%} b {%- endif -%} c",
        "a {{- 'x' -}} b",
        "  {{ 'v' }}  \n  {%+ if true %}x{% endif %}\n",
        "line\n  {# comment #}\n  next",
        "a {#- c -#} b",
        "{% raw %}{{ not }}{% if %}{% endraw %}",
        "  {% raw %}\n  {{ x }}\n  {% endraw %}\n",
        "a {%- raw -%}  {{ x }}  {%- endraw -%} b",
        "x\n{% if true %}\ny\n{% endif %}\n\nz\n",
        "a\r\nb\r\n{% if true %}\r\nc{% endif %}\r\n",
        "{% if true +%}\nkeep newline{% endif %}",
        "\t{% if true %}tab{% endif %}",
        "x  {%- if true %}  y{% endif %}",
        "{{ 'a' }}\n{{ 'b' }}\n",
        "{% set x = 1 %}\n{{ x }}",
        "{%   if   true   %}A{%endif%}",
        "a{% for i in l %}\n{{ i }}{% endfor %}",
        "  {%- for i in l %} {{ i }} {%- endfor %}",
        "a\n\n",
        "  \t{# c #}  x",
        "\u{3000}{% if true %}ideographic space{% endif %}",
        "{{- '  lead' }}\n\n{#- trailing comment -#}\n\n  end  ",
        "{% for x in l -%}\n  {{ x }}\n{%- endfor %}",
        "{{ 1 +\n 2 }}\n{% if true\n and true %}ok{% endif %}",
        "{# multi\nline #}x",
        "{{ {'a': {'b': 1}} }}",
        "{{ '%}' }} {{ '}}' }} {{ \"{%\" }} {# '#}' #} tail",
        "{% if true %}{% raw %}  {% endraw %}{% endif %}|text {%+ if true %}x{% endif %}|  {%+ if true %}x{% endif %}",
        "  {{+ 'x' }}|{%- if true %}\n  a\n{%- endif %}|",
        "  {% for x in l %}{{ x }}{% endfor %}  \n  {% if true %}\n    y\n  {% endif %}\n",
        "a\n{#- c #}\nb|a\n  {#+ c #}\nb|{%\n if\n true\n%}x{%\nendif\n%}",
        "{% if true %}\n\n{% endif %}|{% if true %}\r\n{% endif %}|{% raw %}{% raw %}{% endraw %}|{%raw%}x{%endraw%}",
        "{% raw -%}\n  x\n  {%- endraw %}|\u{00a0}{% if true %}x{% endif %}|{{ 'x' }}{# c #}\n|",
        "{%- set x = 1 -%}\n\n  text\n  {%- if true %}\n\t  z{% endif %}",
        "{% set x = 'a'|upper %}{{ x }}{% if x is defined and x %}!{% endif %}{{ 9 is divisibleby i }}",
        // Operators and literals.
        #"{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }}"#
            + #" {{ -7 % 3 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** -1 }} {{ 5 % -3 }}"#,
        #"{{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 123456789.123456789 }} {{ 1/3 }} {{ 2.0 ** 0.5 }}"#
            + #" {{ 1e-5 }} {{ 0.0001 }} {{ -0.0 }} {{ 1e300 * 1e300 }} {{ big }} {{ tiny }} {{ 2.5e-320 }}"#,
        #"{{ 'a' ~ 1 ~ none ~ true ~ 2.0 ~ [1] ~ undefined_var ~ {'k': 'v'} }}"#,
        #"{{ 'ab' * 3 }} {{ [1] * 3 }} {{ 'x' + 'y' }} {{ [1] + [2] }} {{ (1,) + (2,) }} {{ 3 * 'ab' }} {{ 'a' * 0 }}"#,
        #"{{ true + 1 }} {{ true * 2.5 }} {{ i - neg }} {{ f * 2 }} {{ -i }} {{ +f }} {{ -t }} {{ -(-3) }} {{ - 2 }}"#,
        #"{{ 1 == 1.0 }} {{ 'a' == 'a' }} {{ [1,2] == [1,2] }} {{ (1,2) == [1,2] }}"#
            + #" {{ {'a':1,'b':2} == {'b':2,'a':1} }}"#
            + #" {{ none == none }} {{ undefined_x == undefined_y }} {{ 1 != 2 }} {{ true == 1 }}"#
            + #" {{ 'e\u0301' == 'é' }}"#,
        #"{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ 'B' < 'a' }} {{ [1,2] < [1,3] }} {{ (1,) < (1,0) }}"#
            + #" {{ 2 >= 2.0 }} {{ 'é' < 'z' }} {{ [1, 'a'] <= [1, 'a'] }}"#,
        #"{{ 'a' in 'cat' }} {{ 'z' not in 'cat' }} {{ 1 in [1,2] }} {{ 'b' in d }} {{ 'zz' in d }} {{ 1 in (1,) }}"#
            + #" {{ 'x' in undefined_v }} {{ 1.0 in [1] }} {{ '' in 'abc' }}"#,
        #"{{ not true }} {{ not none }} {{ true and 'x' }} {{ 0 and 'x' }} {{ '' or 'y' }} {{ none or 0 }}"#
            + #" {{ 'a' if i > 5 else 'b' }} {{ 'yes' if n }}| {{ 'a' ~ ('b' if false) ~ 'c' }}"#,
        #"{{ 'single' }} {{ "double" }} {{ 'it\'s' }} {{ "q\"q" }} {{ 'a\nb' }} {{ 'tab\tx' }}"#
            + #" {{ '\x41\u00e9\U0001F600' }}"#
            + #" {{ '\d\w' }} {{ 'con' 'cat' }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_000 }} {{ 1.5e3 }} {{ 1E-2 }}"#
            + #" {{ '\101' }}"#,
        #"{{ True }} {{ False }} {{ None }} {{ true }} {{ none }} {{ [1, 2,] }} {{ {'a': 1,} }} {{ (1, 2,) }}"#,
        #"{{ [1, 'a', none, true, 2.5, [], {}] }} {{ {'k': 'v', 'n': 1} }} {{ (1,) }} {{ () }} {{ (1, 'a') }}"#
            + #" {{ 1, 2 }}"#,
        #"{{ "it's" }} {{ ['it\'s', 'say "hi"', 'both \' "'] }} {{ {"k'": 'v"'} }}"#,
        #"{{ ['\n\t\r', '\x00\x7f\x80\xa0', 'é', '\u200b\u2028', '😀', '\\', '\u0301', '\ue000'] }}"#,
        #"{{ d }} {{ d.c }} {{ l }} {{ nested }} {{ messages[2].tool_calls }}"#,
        #"{{ i }} {{ neg }} {{ f }} {{ t }} {{ n }} {{ zero }}"#
            + #" {{ {1: 'a', 2.5: 'b', true: 'c', none: 'd', (1, 2): 'e'} }}"#,
        // Subscripts and attributes.
        #"{{ messages[0].role }} {{ messages[0]['content'] }} {{ messages[-1].role }} {{ messages[5] }}|{{ d.b }}"#
            + #" {{ d['a'][1] }} {{ d.a.1 }} {{ d.missing }}|{{ d['items'] }} {{ d.items is defined }}"#,
        #"{{ (d.items() | list)[0] }} {{ d.get('b') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }}"#
            + #" {{ d.keys() | list }}"#
            + #" {{ d.values() | list | length }} {{ {'get': 1}['get'] }} {{ {1: 'one'}[1] }} {{ {1: 'one'}[1.0] }}"#,
        #"{{ s[0] }} {{ s[-1] }} {{ s[:5] }} {{ s[::-1] }} {{ s[7:12] }} {{ s[100:] }}|{{ l[1:] }} {{ l[::-1] }}"#
            + #" {{ l[::2] }} {{ l[-2:] }} {{ l[:-1] }} {{ l[5:1:-1] }} {{ l[None:2] }}|{{ (1, 2, 3)[1:] }}"#
            + #" {{ ('<a>'|safe)[1:] }}"#,
        #"{{ 'abc'[1] }}"#
            + #" {{ 'abc'['x'] }}|{{ l['a'] }}|{{ 42.foo }}|{{ none.foo }}|{{ n['x'] }}|{{ l[1.0] }}|{{ l[true] }}"#,
        #"{{ messages | length }} {{ messages[0] | length }} {{ 'é'|length }} {{ 'e\u0301'|length }}"#
            + #" {{ '👨‍👩‍👧'|length }}"#,
        #"{{ messages[1].get('content') }} {{ messages[1].get('name', 'anon') }} {{ [1,2,3][1:][0] }}"#
            + #" {{ 'abc'[::-1][0] }}"#,
        #"{{ messages[2].tool_calls[0].function.arguments|tojson }} {{ messages[2]['tool_calls'][0]['id'] }}"#,
        // Tests.
        #"{{ x is defined }} {{ i is defined }} {{ n is none }} {{ n is defined }} {{ x is undefined }}"#
            + #" {{ i is number }}"#
            + #" {{ f is number }} {{ t is number }} {{ t is boolean }} {{ i is integer }} {{ f is float }}"#
            + #" {{ t is integer }} {{ s is string }} {{ d is mapping }} {{ l is mapping }}"#,
        #"{{ l is iterable }} {{ s is iterable }} {{ i is iterable }} {{ d is iterable }} {{ x is iterable }}"#
            + #" {{ l is sequence }} {{ d is sequence }} {{ n is sequence }} {{ x is sequence }} {{ x is mapping }}"#
            + #" {{ (l|select) is iterable }} {{ (l|select) is sequence }} {{ n is iterable }}"#,
        #"{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 'a' is in 'abc' }}"#
            + #" {{ 2 is in l }} {{ i is eq 42 }} {{ i is equalto 42 }} {{ i is ne 1 }} {{ i is gt 1 }}"#
            + #" {{ i is ge 42 }}"#
            + #" {{ i is lt 100 }} {{ i is le 41 }} {{ i is greaterthan 1 }} {{ i is lessthan 1 }}"#
            + #" {{ 3.0 is odd }} {{ '%s' is odd }}"#,
        #"{{ t is true }} {{ t is false }} {{ 1 is true }} {{ n is sameas none }} {{ t is sameas true }}"#
            + #" {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 'Abc' is lower }} {{ 'upper' is filter }}"#
            + #" {{ 'nope' is filter }} {{ 'odd' is test }} {{ raise_exception is callable }} {{ s is callable }}"#,
        #"{{ i is not none }} {{ n is not none }} {{ not i is none }} {{ x is not defined }} {{ (s|safe) is escaped }}"#
            + #" {{ s is escaped }} {{ messages[0] is mapping }} {{ 'x' if n is none else 'y' }}"#,
        // Filters.
        #"{{ s|upper }} {{ s|lower }} {{ 'hello world'|title }} {{ "they're-here (ok) [x] <y> {z}"|title }}"#
            + #" {{ 'hELLO wORLD'|capitalize }} {{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }} {{ s|center(30) }}|"#
            + #"{{ 'ab'|center(5) }}|{{ 'abc'|center(6) }}|{{ none|trim }} {{ 42|upper }}"#,
        #"{{ l|first }} {{ l|last }} {{ s|first }} {{ s|last }} {{ d|first }} {{ d|last }} {{ []|first }}|"#
            + #"{{ x|first }}|{{ x|last }}|{{ (l|select)|first }} {{ (l|reverse)|first }}"#,
        #"{{ l|length }} {{ l|count }} {{ d|length }} {{ s|length }} {{ x|length }} {{ ''|length }}"#
            + #" {{ (1,2)|length }}"#,
        #"{{ l|join }} {{ l|join(', ') }} {{ words|join('|') }} {{ people|join(', ', attribute='name') }}"#
            + #" {{ [1, none, 'a']|join('-') }} {{ s|join('.') }} {{ d|join(',') }} {{ x|join }}|{{ l|join(1) }}"#,
        #"{{ l|sort }} {{ words|sort }} {{ words|sort(case_sensitive=true) }} {{ words|sort(reverse=true) }}"#
            + #" {{ people|sort(attribute='age')|map(attribute='name')|list }}"#
            + #" {{ people|sort(attribute='age,name')|map(attribute='name')|join }}"#
            + #" {{ people|sort(attribute='age', reverse=true)|map(attribute='name')|join }}"#
            + #" {{ ['é', 'e', 'z', 'E', 'É']|sort }} {{ [2, 1.5, true]|sort }} {{ d|sort }}"#,
        #"{{ words|unique|list }} {{ words|unique(case_sensitive=true)|list }}"#
            + #" {{ people|unique(attribute='age')|map(attribute='name')|list }} {{ [1, 1.0, true, 2]|unique|list }}"#,
        #"{{ l|reverse|list }} {{ s|reverse }} {{ d|reverse|list }} {{ l|list }} {{ s|list }} {{ d|list }}"#
            + #" {{ x|list }}"#
            + #" {{ (l|select)|reverse }}"#,
        #"{{ people|map(attribute='name')|list }} {{ people|map(attribute='nick')|list }}"#
            + #" {{ people|map(attribute='nick', default='-')|list }} {{ words|map('upper')|list }}"#
            + #" {{ l|map('string')|join('+') }} {{ people|map(attribute='tags.0', default='-')|list }}"#
            + #" {{ []|map('upper')|list }}"#
            + #" {{ l|map('int')|sum }} {{ words|map('replace', 'a', '4')|list }} {{ x|map('upper')|list }}"#,
        #"{{ people|selectattr('age', 'equalto', 30)|map(attribute='name')|list }}"#
            + #" {{ people|rejectattr('age', 'eq', 30)|map(attribute='name')|list }}"#
            + #" {{ people|selectattr('nick')|map(attribute='name')|list }}"#
            + #" {{ people|selectattr('nick', 'defined')|list|length }}"#
            + #" {{ people|rejectattr('nick', 'undefined')|list|length }}"#
            + #" {{ l|select('odd')|list }} {{ l|reject('odd')|list }} {{ [0, 1, '', 'a', none]|select|list }}"#
            + #" {{ l|select('gt', 1)|list }} {{ messages|selectattr('role', 'in', ['user', 'system'])|list|length }}"#
            + #" {{ messages|selectattr('tool_calls', 'defined')|list|length }}"#,
        #"{{ d|items|list }} {{ d|dictsort }} {{ {'b': 1, 'A': 2, 'a': 0}|dictsort }}"#
            + #" {{ {'b': 1, 'A': 2}|dictsort(true) }}"#
            + #" {{ {'x': 2, 'y': 1}|dictsort(by='value') }} {{ {'x': 2, 'y': 1}|dictsort(reverse=true) }}"#
            + #" {{ x|items|list }}"#,
        #"{{ x|default('dflt') }} {{ n|default('dflt') }} {{ ''|default('dflt') }} {{ ''|default('dflt', true) }}"#
            + #" {{ 0|d('zero', true) }} {{ i|default(0) }} {{ d.missing|default('m') }} {{ x|d }}|"#,
        #"{{ '42'|int }} {{ '  -17 '|int }} {{ '3.99'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ '0x1A'|int(0, 16) }}"#
            + #" {{ '0b11'|int(0, 0) }} {{ '1_000'|int }} {{ 3.99|int }} {{ -3.99|int }} {{ t|int }} {{ n|int }}"#
            + #" {{ '1e3'|int }} {{ '012'|int }} {{ '012'|int(0, 0) }} {{ 'ff'|int(0, 16) }} {{ '_1'|int }}"#
            + #" {{ 'nan'|int }}"#,
        #"{{ '2.5'|float }} {{ ' 1e-3 '|float }} {{ 'abc'|float }} {{ 'inf'|float }} {{ '-Infinity'|float }}"#
            + #" {{ 'nan'|float }} {{ 3|float }} {{ n|float(1.5) }} {{ '1_0.5'|float }} {{ '.5'|float }}"#
            + #" {{ '5.'|float }}"#,
        #"{{ -3|abs }} {{ -2.5|abs }} {{ 3|abs }} {{ t|abs }} {{ (-3)|abs }}"#,
        #"{{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 1.005|round(2) }} {{ 42.55|round(1, 'floor') }}"#
            + #" {{ 42.51|round(1, 'ceil') }} {{ 3|round }} {{ 1234.5|round(-2) }} {{ -2.5|round }}"#
            + #" {{ 3|round(1, 'floor') }}"#,
        #"{{ [1, 2, 3]|sum }} {{ [1.5, 2]|sum }} {{ people|sum(attribute='age') }} {{ [[1], [2]]|sum(start=[]) }}"#
            + #" {{ l|min }} {{ l|max }} {{ words|min }} {{ words|max }} {{ words|max(case_sensitive=true) }}"#
            + #" {{ people|max(attribute='age') }}|{{ []|min }}|{{ people|min(attribute='name') }}"#,
        "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}|"
            + "{{ 'a\\nb'|indent('> ') }}|{{ text|indent(3) }}|{{ ''|indent }}|{{ 'x\\r\\ny\\u2028z'|indent(1) }}|"
            + "{{ ('a\\nb'|safe)|indent(1) }}",
        #"{{ 'hello world foo'|wordcount }} {{ s|wordcount }} {{ 'a-b_c d'|wordcount }} {{ ''|wordcount }}"#,
        #"{{ 'a b c'|replace(' ', '_') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 123|replace('2', 'x') }}"#
            + #" {{ 'ab'|replace('', '.') }} {{ ('<a>'|safe)|replace('a', '&') }}"#,
        #"{{ '<a href="x">&'|e }} {{ '<b>'|escape }} {{ ('<b>'|safe)|e }} {{ '<b>'|forceescape }}"#
            + #" {{ ('<i>'|safe) + '<u>' }} {{ '<u>' + ('<i>'|safe) }} {{ ('<i>'|safe) ~ '<u>' }}"#
            + #" {{ (('<i>'|safe) + '<u>')|length }} {{ ('a'|safe).upper() }} {{ ('<p> x </p>'|safe|trim) + '&' }}"#
            + #" {{ ('x'|safe) * 2 }} {{ ('<'|safe)|upper + '>' }} {{ ('a,b'|safe).split(',') }}"#
            + #" {{ ('x'|safe) == 'x' }}"#
            + #" {{ ('-'|safe).join(['<', '>']) }} {{ ('{}'|safe).format('<') }} {{ n|e }}"#
            + #" {{ x|e }}|{{ ('<x>'|safe)[1:] }}"#,
        #"{{ 'x'|string }} {{ 1|string }} {{ n|string }} {{ l|string }} {{ (l|string)[0] }} {{ d|string|length }}"#
            + #" {{ 1.0|string }} {{ x|string }}|"#,
        #"{{ l|tojson }} {{ d|tojson }} {{ d|tojson(indent=2) }} {{ d|tojson(indent='\t') }}"#
            + #" {{ d|tojson(sort_keys=true) }} {{ d|tojson(separators=(',', ':')) }} {{ people|tojson(indent=0) }}"#
            + #" {{ s|tojson }} {{ s|tojson(ensure_ascii=true) }} {{ '\u0000\u001f\u007f\\"/\u2028'|tojson }}"#,
        #"{{ [1.0, 1e16, 1e-7, -0.0, 0.1, 3.0e300, 5e-324, 1e22, 123456789012345678.0]|tojson }}"#
            + #" {{ {'k': none, 't': true, 'f': false}|tojson }} {{ {}|tojson(indent=2) }} {{ []|tojson(indent=2) }}"#
            + #" {{ {1: 'int key', 2.5: 'f', true: 'b', none: 'n'}|tojson }} {{ (1, 'a')|tojson }}"#
            + #" {{ ('x'|safe)|tojson }}"#
            + #" {{ d|tojson(indent=2, separators=(', ', ' = ')) }}"#
            + #" {{ {'b': {'d': 1, 'c': 2}, 'a': 0}|tojson(sort_keys=true, indent=1) }}"#
            + #" {{ [1e300 * 1e300, -1e300 * 1e300]|tojson }} {{ 'x'|tojson(indent=-1) }}"#
            + #" {{ [1, [2]]|tojson(indent=true) }}"#,
        #"{{ 'a %s b %d c %.2f d %5s|%-5s| %x %r %X' % ('S', 42, 3.14159, 'r', 'l', 255, 'q', 255) }}"#
            + #" {{ '%(a)s-%(b)s' % {'a': 1, 'b': 2} }} {{ '100%%' % () }} {{ '%s'|format('x') }}"#
            + #" {{ '%s and %s'|format(1, 2) }}"#
            + #" {{ '%(k)s'|format(k='v') }} {{ '%05.1f|%+d|% d' % (3.14159, 5, 7) }} {{ '%c%c' % (72, 'i') }}"#
            + #" {{ '%e' % 12345.678 }} {{ '%g %g' % (0.00001, 123456789) }} {{ '%s' % [1, 2] }} {{ '%s' % none }}"#
            + #" {{ '%d' % 3.99 }} {{ '%i|%u' % (1, 2) }} {{ '%.3s' % 'abcdef' }} {{ 'x' % {} }} {{ '%#x' % 255 }}"#,
        #"{{ 'text that is long enough to be cut somewhere'|truncate(20) }} {{ 'short'|truncate(20) }}"#
            + #" {{ 'text that is long enough'|truncate(10, true) }}"#
            + #" {{ 'text that is long enough'|truncate(10, false, '…', 0) }}"#,
        #"{{ l|batch(2)|list }} {{ l|batch(2, 'x')|list }} {{ l|batch(0)|list }} {{ {'a': 1}|unique|list }}"#
            + #" {{ {'a': 1}[[1]] is defined }} {{ words|slice(3)|list }} {{ words|slice(3, 'f')|list }}"#,
        #"{{ messages[0]|attr('role') }}|{{ 'abc'|attr('upper') is defined }}"#
            + #" {{ people[0]|attr('items') is defined }}"#,
        // Python string methods.
        #"{{ '  a b  '.strip() }}|{{ 'xxa'.lstrip('x') }}|{{ 'axx'.rstrip('x') }}|{{ '\t a \n'.strip() }}|"#
            + #"{{ ' a '.lstrip() }}|"#
            + #"{{ ' a '.rstrip() }}|{{ '\u00a0a\u3000'.strip() }}|{{ 'abcba'.strip('ab') }}|{{ ' x '.strip(none) }}|"#,
        #"{{ 'a,b,,c'.split(',') }} {{ '  a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }}"#
            + #" {{ '  a  b '.rsplit(None, 1) }} {{ 'a\nb\r\nc\n'.splitlines() }} {{ 'a\nb'.splitlines(true) }}"#
            + #" {{ ''.split() }} {{ ''.split(',') }} {{ 'abc'.split('abc') }} {{ 'a b  c'.split(maxsplit=1) }}"#
            + #" {{ 'a<think>b</think>c'.split('</think>')[-1] }} {{ '  a b c  '.split(None, 1) }}"#
            + #" {{ 'a\x1cb\x85c'.split() }}"#,
        #"{{ 'Hello'.startswith('He') }} {{ 'Hello'.startswith(('x', 'H')) }} {{ 'Hello'.endswith('lo') }}"#
            + #" {{ 'Hello'.startswith('l', 2) }} {{ 'Hello'.endswith('l', 0, 4) }} {{ 'Hello'.find('l') }}"#
            + #" {{ 'Hello'.rfind('l') }} {{ 'Hello'.find('z') }} {{ 'Hello'.index('e') }} {{ 'Hello'.count('l') }}"#
            + #" {{ 'Hello'.find('l', 3) }} {{ 'Hello'.startswith('') }} {{ 'Hello'.endswith(('x',)) }}"#
            + #" {{ 'aaa'.count('aa') }}"#
            + #" {{ 'Hello'.rindex('l') }} {{ 'Hello'.find('', 2) }} {{ 'Hello'.count('') }}"#
            + #" {{ 'Hello'.startswith('H', -5) }}"#,
        #"{{ 'Hello World'.upper() }} {{ 'Hello World'.lower() }} {{ 'hello world'.title() }}"#
            + #" {{ "they're bill's friends 3rd".title() }} {{ 'hELLO'.capitalize() }} {{ 'Hello'.swapcase() }}"#
            + #" {{ 'ß'.upper() }} {{ 'İ'.lower()|length }} {{ 'ǆemal'.title() }} {{ 'ǆ'.capitalize() }}"#
            + #" {{ 'ÉCOLE'.lower() }}"#,
        #"{{ 'ΑΣ ΟΔΟΣ'|lower }} {{ 'ΟΔΟΣ.'.lower() }} {{ 'ΣΑΣ'.capitalize() }} {{ 'ΟΔΟΣ ΟΔΟΣ'.title() }}"#
            + #" {{ 'ΣΑΣ'|title }} {{ 'Σ'.lower() }} {{ 'aΣb'.lower() }} {{ 'aΣ'.swapcase() }} {{ '٣'|int }}"#
            + #" {{ '٣.٥'|float }} {{ 'ﬁ'.upper() }} {{ 'ŉ'.upper() }}"#
            + #" {{ 'ΣΑΣ'|lower|capitalize }} {{ 'Σ́Σ'.lower() }}"#,
        #"{{ 'a-b-c'.replace('-', '+') }} {{ 'aaaa'.replace('a', 'b', 2) }} {{ 'ab'.replace('', '|') }}"#
            + #" {{ ', '.join(['a', 'b']) }} {{ '-'.join('abc') }} {{ ''.join(l|map('string')) }} {{ 'x'.join([]) }}"#,
        #"{{ '{} and {}'.format('a', 'b') }} {{ '{0}{1}{0}'.format('x', 'y') }} {{ '{name}!'.format(name='Bob') }}"#
            + #" {{ '{{literal}} {}'.format(1) }} {{ '{!r}'.format('q') }} {{ '{}'.format(none) }}"#
            + #" {{ '{}'.format([1.0]) }}"#,
        #"{{ '123'.isdigit() }} {{ 'abc'.isalpha() }} {{ 'a1'.isalnum() }} {{ '  '.isspace() }} {{ 'ABC'.isupper() }}"#
            + #" {{ 'abc'.islower() }} {{ ''.isdigit() }} {{ '½'.isnumeric() }} {{ '²'.isdigit() }}"#
            + #" {{ '²'.isdecimal() }}"#
            + #" {{ 'A1!'.isupper() }} {{ '1'.islower() }} {{ 'é'.isalpha() }}"#,
        #"{{ 'ab'.center(6, '*') }} {{ 'ab'.ljust(5, '.') }} {{ 'ab'.rjust(5) }} {{ '42'.zfill(5) }}"#
            + #" {{ '-42'.zfill(5) }}"#
            + #" {{ 'prefix_x'.removeprefix('prefix_') }} {{ 'x.txt'.removesuffix('.txt') }}"#
            + #" {{ 'a=b=c'.partition('=') }}"#
            + #" {{ 'a=b=c'.rpartition('=') }} {{ 'abc'.partition('z') }} {{ 'abc'.center(2) }}"#,
        #"{{ s.split(' ')[0].lower() }} {{ messages[1].content.upper() }} {{ json_text|length }}"#,
        // Loops.
        "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/"
            + "{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.depth }}/{{ loop.depth0 }}:{{ m.role }} "
            + "{% endfor %}{{ loop }}|",
        "{% for x in l %}{{ loop.previtem }}-{{ x }}-{{ loop.nextitem }}|{% endfor %}",
        "{% for x in l %}{{ loop.cycle('odd', 'even') }}{% endfor %} {% for x in l %}{{ loop }}{% endfor %}",
        "{% for x in l if x > 1 %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}",
        "{% for x in [] %}x{% else %}empty{% endfor %} {% for x in l if x > 10 %}x{% else %}none matched{% endfor %}",
        "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}"
            + " {% for k, v in d|dictsort %}{{ k }}={{ v }};{% endfor %}",
        "{% for a, b in [(1, 2), [3, 4], 'xy'] %}{{ a }}{{ b }}"
            + " {% endfor %}{% for (a, b), c in [((1, 2), 3)] %}{{ a }}{{ c }}{% endfor %}",
        "{% for c in 'héllo' %}{{ c }}.{% endfor %} {% for k in d %}{{ k }}{% endfor %}"
            + " {% for x in undefined_seq %}no{% endfor %}ok",
        "{% for x in l %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}"
            + "{% endfor %}",
        "{% for x in l %}{% for y in l %}{% if y > x %}{% break %}{% endif %}{{ x }}{{ y }},{% endfor %};{% endfor %}",
        "{% for x in l %}{{ loop.index }}{% for y in [1,2] %}{{ loop.index }}{% endfor %}{{ loop.index }}|{% endfor %}",
        "{% for x in l %}{% set outer = loop %}{% for y in [1] %}{{ outer.index }}{{ outer.last }}{% endfor %}"
            + "{% endfor %}",
        "{% for x in l %}{% if loop.first %}F{% elif loop.last %}L{% else %}M{% endif %}{% endfor %}",
        "{% for m in messages[::-1] %}{{ m.role }}{% endfor %}"
            + " {% for m in messages|reverse %}{{ loop.index }}{% endfor %}",
        // Scoping.
        "{% set x = 'o' %}{% for i in l %}[{{ x }}]{% set x = i %}({{ x }}){% endfor %}{{ x }}",
        "{% for i in l %}{% if i > 1 %}{% set found = i %}{% endif %}{% endfor %}[{{ found }}]",
        "{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}{% for i in [1] %}{% set x = 3 %}{% endfor %}"
            + "{{ x }}",
        "{% set x = 1 %}{% filter upper %}{% set x = 2 %}a{{ x }}{% endfilter %}{{ x }}",
        "{% set x = 1 %}{% set y %}{% set x = 2 %}b{{ x }}{% endset %}{{ y }}{{ x }}",
        "{% set x = 1 %}{% for i in [] %}{% else %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}",
        "{% set x = 1 %}{% with %}{% set x = 2 %}{% endwith %}{{ x }}{% with a = 1, b = i %}{{ a }}{{ b }}"
            + "{% endwith %}{{ a }}|",
        "{% set ns = namespace(found=false, count=0, items=[]) %}{% for i in l %}{% if i > 1 %}"
            + "{% set ns.found = true %}"
            + "{% set ns.count = ns.count + 1 %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.count }} {{ ns.items }}",
        "{% set ns = namespace() %}{% set ns.a = 1 %}{{ ns.a }} {{ ns.b }}|{{ ns }}|{{ ns['a'] }}",
        "{% set ns = namespace(d) %}{{ ns.b }} {{ ns.c.x }} {% set ns2 = ns %}{% set ns2.b = 5 %}{{ ns.b }}"
            + " {{ ns == ns2 }}",
        "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set (c, e) = [3, 4] %}{{ c }}{{ e }} {% set t = 1, %}{{ t }}",
        "{% set block %}  x {{ i }}\n{% endset %}[{{ block }}]{% set up | upper | trim %} hi {% endset %}[{{ up }}]",
        "{% filter upper %}hello {{ s }}{% endfilter %}{% filter trim|upper %}  x  {% endfilter %}|",
        "{% if i < 10 %}a{% elif i < 50 %}b{% else %}c{% endif %}{% if n %}x{% elif not n %}y{% endif %}",
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% else %}"
            + "{% set loop_messages = messages %}{% endif %}{{ loop_messages|length }}",
        // Macros.
        "{% macro greet(name, greeting='Hello', punct=greeting ~ '!') %}{{ greeting }}, {{ name }}{{ punct }}"
            + "{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet(name='Cy', punct='?') }}"
            + " {{ greet('D', greeting='Yo') }}",
        "{% macro m() %}{{ varargs }}|{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}{{ m() }}",
        "{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(3) }}",
        "{% macro show() %}{{ i }}{{ later }}{% endmacro %}{% set later = 'L' %}{{ show() }}",
        "{% for x in l %}{% macro inner() %}{{ x }}{% endmacro %}{{ inner() }}{% endfor %}",
        "{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}{{ m|string }} {{ m.name }} {{ m.arguments }}",
        "{% macro m(x) %}{% set y = x * 2 %}{{ y }}{% endmacro %}{{ m(2) }}{{ y }}|",
        "{% macro m() %}  indented\n  {% if true %}yes{% endif %}\n{% endmacro %}[{{ m() }}]",
        "{% macro m(a, b) %}{{ a }}{{ b }}{% endmacro %}{{ m(*[1, 2]) }}{{ m(**{'a': 3, 'b': 4}) }}{{ m(5, *[6]) }}",
        "{% macro m(v) %}{{ v|tojson }}{% endmacro %}{{ m(messages[2].tool_calls[0].function.arguments) }}",
        "{% macro outer(a) %}{% macro inner(b) %}{{ a }}{{ b }}{% endmacro %}{{ inner(2) }}{% endmacro %}"
            + "{{ outer(1) }}",
        // transformers' globals and {% generation %}.
        "{% generation %}{% set g = 1 %}gen {{ i }}{% endgeneration %}[{{ g }}]",
        "{{ range(3)|list }} {{ range(1, 10, 3)|list }} {% for i in range(2) %}{{ i }}{% endfor %}"
            + " {{ range(5)|length }}"
            + " {{ range(10, 0, -3)|list }} {{ range(0)|list }}",
        "{{ dict(a=1, b='x') }} {{ dict([('k', 'v')]) }} {{ dict(d, z=0)|length }} {{ dict() }}",
        "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %j %p %I %y %e %-d %a %%') }}",
        "{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}{{ tools is none }}{{ documents }}",
        "{% print 'p', 1 %}",
        // Dict views and ranges print, index and compare as Python's objects do.
        "{{ d.items() }} {{ d.keys() }} {{ d.values() }} {{ range(3) }} {{ range(1, 10, 2) }} {{ range(3)[1] }}"
            + " {{ range(3)[-1] }} {{ d.keys()[0] }}| {{ d.items()|list|length }} {{ 'b' in d.keys() }}"
            + " {{ d.keys()|join(',') }} {{ range(3)|reverse|list }} {{ d.keys() is sequence }}"
            + " {{ range(2) is sequence }}"
            + " {{ d.items() == d.items() }} {{ d.values() == d.values() }} {{ range(3) == range(0, 3) }}"
            + " {{ d.keys()|length }} {{ range(0) }} {{ 'x' if d.keys() else 'y' }} {{ [d.keys()] }}"
            + " {{ d.keys()|first }}"
            + " {{ d.items()|last }} {{ dict(d.items())|length }} {% for k, v in d.items() %}{{ k }}{% endfor %}"
            + " {{ range(3)[5] }}|{{ d.keys() is iterable }} {{ d.keys()|sort }} {{ d.values()|select|list }}",
        // Generators are one-shot, always truthy and have no length.
        "{% set g = l|select %}{% for x in g %}{{ x }}{% endfor %}|{% for x in g %}{{ x }}{% endfor %}|{{ g|list }}",
        "{% set g = l|select %}{% for x in g %}{{ x }}{% break %}{% endfor %}|{% for x in g %}{{ x }}{% endfor %}|"
            + "{% set h = l|map('string') %}{% for x in h %}{% if x == '1' %}{% break %}{% endif %}{% endfor %}"
            + "{{ h|list }}",
        "{{ 'yes' if ([]|select) else 'no' }} {{ 1 in (l|select) }}"
            + " {% set g = l|map('string') %}{{ '1' in g }}{{ g|list }}",
        "{{ (l|map('string')|list) }} {{ messages|selectattr('role', 'equalto', 'user')|first|attr('content') }}|"
            + "{{ (messages|selectattr('role', 'equalto', 'user')|first).content }}",
    ]

    /// Templates that both jinja2 and MeshChat must reject.
    static let failing: [String] = [
        "{{ raise_exception('boom') }}", "{{ x.foo }}", "{{ x['k'] }}", "{{ x + 1 }}", "{{ x() }}", "{{ x < 1 }}",
        "{{ x.y.z }}", "{{ n.x.y }}", "{{ -x }}", "{{ messages.append(1) }}", "{{ d.pop('a') }}",
        "{{ d.update({}) }}", "{{ l.sort() }}", "{{ 1 + 'a' }}", "{{ 'a' + 1 }}", "{{ none + 1 }}", "{{ 1 < 'a' }}",
        "{{ [] < 1 }}", "{{ none < 1 }}", "{{ 1 / 0 }}", "{{ 1 // 0 }}", "{{ 1 % 0 }}", "{{ 1.0 / 0 }}",
        "{{ 1.5 // 0 }}", "{{ (l|select)|length }}", "{{ (l|select)|last }}", "{{ i|length }}", "{{ n|length }}",
        "{{ 'a' in 1 }}", "{{ 1 in 'a' }}", "{{ [1] in d }}", "{{ 'a' in n }}", "{% for x in 5 %}{% endfor %}",
        "{% for a, b in [1] %}{% endfor %}", "{% for a, b in ['abc'] %}{% endfor %}", "{% set a, b = [1, 2, 3] %}",
        "{% if %}{% endif %}", "{{ 1 + }}", "{% for %}{% endfor %}", "{% endif %}", "{{ 'unclosed }}",
        "{% if true %}", "{% for x in l %}", "{% macro m(a=1, b) %}{% endmacro %}", "{{ a b }}", "{% break %}",
        "{{ ) }}", "{% unknown_tag %}", "{{ {'a': 1 }}", "{# unclosed comment", "{% raw %} no end",
        "{% set ns = 1 %}{% set ns.x = 2 %}", "{{ namespace(_x=1) }}", "{% set ns = namespace() %}{% set ns._p = 1 %}",
        "{{ x|int }}", "{{ x|float }}", "{{ x|tojson }}", "{{ (l|select)|tojson }}", "{{ namespace()|tojson }}",
        "{{ 'abc'.split('') }}", "{{ '%d' % 'x' }}", "{{ '%s %s' % ('a',) }}", "{{ '%s' % ('a', 'b') }}",
        "{{ 'abc' % 5 }}", "{{ range(1000000)|length }}", "{{ l[::0] }}", "{{ 'abc'.index('z') }}",
        "{{ nope|nosuchfilter }}", "{{ 1 is nosuchtest }}", "{{ {[1]: 2} }}", "{{ l['a':] }}", "{{ d[1:] }}",
        "{{ n[1:] }}", "{{ x[1:] }}", "{{ i[1:] }}", "{{ (l|select)[1:] }}",
        "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "{% macro m(a) %}{% endmacro %}{{ m(b=1) }}",
        "{% macro m(a) %}{% endmacro %}{{ m(1, a=2) }}", "{{ -'a' }}", "{{ '{}'.format() }}", "{{ ''.join([1]) }}",
        "{{ dict(1) }}", "{{ 'x'|indent(2.5) }}", "{{ [1, 2]|sum(start='') }}", "{{ 'x' * 'y' }}",
        "{{ 'a'.startswith(1) }}", "{{ 'ab'|truncate(1) }}", "{{ 1|truncate }}",
        "{{ 'a'|round }}", "{{ 1|round(0, 'up') }}", "{{ x|round }}", "{{ d|dictsort(by='k') }}",
        "{{ l|dictsort }}", "{{ 5|items|list }}", "{{ 5|join }}", "{{ x|indent }}", "{{ 1|list }}",
        "{{ l|map|list }}", "{{ people|selectattr|list }}", "{{ i|reverse }}", "{{ x|attr('a') }}",
        "{{ 1|tojson(separators=1) }}", "{% set a = 1 %}{{ a(1) }}", "{{ 'x'(1) }}", "{{ loop.cycle() }}",
        "{% for x in l %}{{ loop.cycle() }}{% endfor %}", "{{ [[1], [1]]|unique|list }}",
        "{{ [1, 'a']|sort }}", "{{ [1, 'a']|max }}", "{{ x is divisibleby 3 }}", "{{ 'a' is odd }}", "{{ n is odd }}",
        "{{ strftime_now(5) }}", "{{ range('a') }}", "{{ range(1, 2, 0)|list }}", "{{ '%(a)s' % 1 }}",
        "{{ '%(a)s' % {'b': 1} }}", "{{ '%z' % 1 }}", "{{ '%' % () }}", "{{ 'a'|float(1, 2) }}",
        "{{ 'x'.strip(1) }}", "{{ 'a'.split(',', 'x') }}", "{{ 'x'.zfill('a') }}", "{{ 'x'.center(3, 'ab') }}",
        "{{ 'x'.partition('') }}", "{{ x|join }}{{ x.items() }}", "{{ d.get() }}", "{{ d.get([]) }}",
        "{% set a, b = 1 %}", "{{ messages[2].tool_calls[0].function.arguments.x.y }}",
        "{% for x in l %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}", "{{ 1 is divisibleby 0 }}",
        "{{ loop.index }}", "{% for x in l if loop.index > 1 %}{% endfor %}",
        "{{ d.keys()|tojson }}", "{{ range(3)|tojson }}", "{{ d.keys()[1:] }}", "{{ d.keys() + [1] }}",
        "{{ range(3) * 2 }}", "{{ d.items()|items|list }}", "{{ messages[0].content + 1 }}",
    ]

    func testRenderingSnippetsMatchJinja2() throws {
        try compare(Self.rendering, expectFailure: false)
    }

    func testFailingSnippetsFailInBoth() throws {
        try compare(Self.failing, expectFailure: true)
    }

    private func compare(_ templates: [String], expectFailure: Bool) throws {
        let cases = templates.map { template in
            ReferenceRenderer.Case(template: template, messages: Self.messages, tools: nil, addGenerationPrompt: true,
                                   bosToken: "<s>", eosToken: nil, extra: Self.variables)
        }
        let expected = try ReferenceRenderer.render(cases)
        var parsed: [String: ChatTemplate] = [:]
        for (item, reference) in zip(cases, expected) {
            let actual = ReferenceRenderer.swiftOutcome(item, parsed: &parsed)
            let label = item.template.debugDescription
            switch (reference, actual) {
            case (.rendered(let a), .rendered(let b)):
                XCTAssertFalse(expectFailure, "\(label): expected to fail, but both render \(a.debugDescription)")
                if a != b { XCTFail("\(label): output differs at \(ReferenceRenderer.firstDifference(a, b))") }
            case (.failed(let error), .failed):
                XCTAssertTrue(expectFailure, "\(label): both fail, jinja2 with \(error)")
            case (.rendered(let text), .failed(let error)):
                XCTFail("\(label): jinja2 renders \(text.debugDescription) but Swift fails: \(error)")
            case (.failed(let error), .rendered(let text)):
                XCTFail("\(label): Swift renders \(text.debugDescription) but jinja2 fails: \(error)")
            }
        }
    }
}
