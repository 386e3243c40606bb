"""Docker's Dockerfile shell lexer: quotes, escapes, ${VAR} forms, word splitting."""

import pytest

from berth.build.shell import Lexer, ShellError, expand, expand_heredoc, expand_words

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}

# (word, expected) -- expected None means an error. Mirrors BuildKit's envVarTest table.
WORDS = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he'llo", None),
    ("he\\'llo", "he'llo"),
    ("he\\\\'llo", None),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hello', None),
    ('"hello\\"', None),
    ('"hel\'lo"', "hel'lo"),
    ("'hello", None),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ('"\'\'"', "''"),
    ("$.", "$."),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}", "he${}"),
    ("he\\${}xx", "he${}xx"),
    ("${}", None),
    ("${}aaa", None),
    ("he${}", None),
    ("he${}xx", None),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${.}", None),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:YYY}", None),
    ("he${XXX?}", None),
    ("he${XXX:?}", None),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${NULL:?}", None),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ('"he\'$PWD\'"', "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("'he\\$PWD'", "he\\$PWD"),
    ("he${PWD", None),
    ("he${PWD=000}xx", None),
    ("he${PWD+${PWD}:}xx", "he/home:xx"),
    ("he${XXX-}xx", "hexx"),
    ("${XXX:-\\$PWD:}xx", "$PWD:xx"),
    ("${XXX:-\\${PWD}z}xx", "${PWDz}xx"),
    ("$KOREAN", "한국어"),
    ("안녕$KOREAN", "안녕한국어"),
    ("안'녕'하세요", "안녕하세요"),
    ("안녕\\'하세요", "안녕'하세요"),
    ("$1", ""),
    ("${aaa:-bbb}}", "bbb}"),
    ("${aaa:-bbb", None),
    ("${aaa:-${bbb:-ccc}}", "ccc"),
    ("${aaa:-bbb ${foo}", None),
    ("${aaa:-bbb {foo}", "bbb {foo"),
    ("${:}", None),
    ("${:-bbb}", None),
    ("${:+bbb}", None),
    ("he${PWD:=000}xx", None),
    ("${{aaa}", None),
    ("${aaa}}", "}"),
    ("${aaa", None),
    ("${{aaa", None),
    ("${{aaa}}", None),
    ("${aaa}}}", "}}"),
    # default/alternative distinguish unset from empty only with ':'
    ("${NULL-def}", ""),
    ("${NULL:-def}", "def"),
    ("${NULL+alt}", "alt"),
    ("${NULL:+alt}", ""),
]


@pytest.mark.parametrize("word,expected", WORDS)
def test_expand_table(word, expected):
    if expected is None:
        with pytest.raises(ShellError):
            expand(word, ENV)
    else:
        assert expand(word, ENV) == expected


STR = {"str": "foobarbaz", "path": "/usr/local/lib/file.tar.gz", "x": "a*b"}


@pytest.mark.parametrize("word,expected", [
    # docs.docker.com/reference/dockerfile/#environment-replacement
    ("${str#f*b}", "arbaz"),
    ("${str##f*b}", "az"),
    ("${str%b*z}", "foobar"),
    ("${str%%b*z}", "foo"),
    ("${str/ba/fo}", "fooforbaz"),
    ("${str//ba/fo}", "fooforfoz"),
    ("${path##*/}", "file.tar.gz"),
    ("${path%/*}", "/usr/local/lib"),
    ("${path%.*}", "/usr/local/lib/file.tar"),
    ("${path%%.*}", "/usr/local/lib/file"),
    ("${path#/usr/}", "local/lib/file.tar.gz"),
    ("${path#nomatch}", "/usr/local/lib/file.tar.gz"),
    ("${unset#x}", ""),
    ("${str#???}", "barbaz"),
    ("${x#a\\*}", "b"),
    ("${str/o/0}", "f0obarbaz"),
    ("${str//o/0}", "f00barbaz"),
    ("${str/b*/X}", "fooX"),
])
def test_pattern_forms(word, expected):
    assert expand(word, STR) == expected


def test_error_messages_are_dockers():
    with pytest.raises(ShellError) as e:
        expand("${X:?must be set}", {})
    assert str(e.value) == 'failed to process "${X:?must be set}": X: must be set'
    with pytest.raises(ShellError) as e:
        expand("${X:?}", {"X": ""})
    assert str(e.value).endswith("X: is not allowed to be empty")
    with pytest.raises(ShellError) as e:
        expand("${X?}", {})
    assert str(e.value).endswith("X: is not allowed to be unset")
    with pytest.raises(ShellError) as e:
        expand("${}", {})
    assert str(e.value).endswith("syntax error: bad substitution")
    with pytest.raises(ShellError) as e:
        expand("'abc", {})
    assert str(e.value).endswith("unexpected end of statement while looking for matching single-quote")
    with pytest.raises(ShellError) as e:
        expand("${X=1}", {})
    assert str(e.value).endswith("unsupported modifier (=) in substitution")


SPACE_ENV = {"hi": "hi", "space": "abc  def", "leading": "  ab c", "trailing": "ab c   "}


# (text, expected words) -- BuildKit's wordsTest table; None means an error.
SPLITS = [
    ("hello", ["hello"]),
    ("hello${hi}bye", ["hellohibye"]),
    ("hello${nope}bye", ["hellobye"]),
    ("hello${space}bye", ["helloabc", "defbye"]),
    ('hello"${space}"bye', ["helloabc  defbye"]),
    ('hello "${space}"bye', ["hello", "abc  defbye"]),
    ("hello${leading}def", ["hello", "ab", "cdef"]),
    ('hello"${leading}" def', ["hello  ab c", "def"]),
    ('hello"${leading}"', ["hello  ab c"]),
    ("hello${leading}", ["hello", "ab", "c"]),
    ("hello${trailing}", ["helloab", "c"]),
    ("hello${trailing}d", ["helloab", "c", "d"]),
    ('hello"${trailing}"d', ["helloab c   d"]),
    ('hel"lo${trailing}"', ["helloab c   "]),
    ('hello" there  "', ["hello there  "]),
    ("hello there", ["hello", "there"]),
    ("hello\\ there", ["hello there"]),
    ('hello" there', None),
    ('hello\\" there', ['hello"', "there"]),
    ('hello"\\\\there"', ["hello\\there"]),
    ('hello"\\there"', ["hello\\there"]),
    ("hello'\\\\there'", ["hello\\\\there"]),
    ("hello'\\there'", ["hello\\there"]),
    ("hello'$there'", ["hello$there"]),
    ("  a   b  ", ["a", "b"]),
    ('""', []),
    ("", []),
]


@pytest.mark.parametrize("text,expected", SPLITS)
def test_expand_words_table(text, expected):
    if expected is None:
        with pytest.raises(ShellError):
            expand_words(text, SPACE_ENV)
    else:
        assert expand_words(text, SPACE_ENV) == expected


@pytest.mark.parametrize("word,expected", [
    ("c:\\windows", "c:\\windows"),      # backslash is literal when the escape is a backtick
    ("a`$X", "a$X"),
    ("a` b", "a b"),
    ('"a`"b"', 'a"b'),
    ("$X`", "1"),
    ("``", "`"),
])
def test_backtick_escape(word, expected):
    assert expand(word, {"X": "1"}, escape="`") == expected


def test_expand_keeps_inner_spaces_but_words_split():
    env = {"V": "a  b"}
    assert expand("x $V y", env) == "x a  b y"
    assert expand_words("x $V y", env) == ["x", "a", "b", "y"]


def test_raw_lexer_options():
    assert Lexer(raw_quotes=True).process("<<'EOF'", {})[0] == "<<'EOF'"
    assert Lexer(raw_escapes=True).process("a\\ b", {})[0] == "a\\ b"
    assert Lexer(skip_unset=True).process("$A ${B} ${C:-x}", {})[0] == "$A ${B} ${C:-x}"


@pytest.mark.parametrize("content,expected", [
    ('echo "$X"\n', 'echo "1"\n'),                 # quotes are kept, variables inside them expand
    ("it's $X\n", "it's 1\n"),                      # a lone quote is no error
    ("${Y:-default} ${X:+set}\n", "default set\n"),
    ("\\$X stays\n", "$X stays\n"),
    ("no vars\n\nblank line kept\n", "no vars\n\nblank line kept\n"),
])
def test_expand_heredoc_keeps_quotes(content, expected):
    assert expand_heredoc(content, {"X": "1"}) == expected
