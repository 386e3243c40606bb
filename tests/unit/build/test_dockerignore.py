""".dockerignore: Docker's file format and moby/patternmatcher matching rules."""

import pytest

from berth.build.dockerignore import DockerignoreError, Matcher, clean, parse


def test_parse_like_docker_readall():
    # moby/buildkit dockerignore_test.go
    content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! \n"
    assert parse(content) == ["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"]


@pytest.mark.parametrize("text,patterns", [
    ("./foo\n", ["foo"]),
    ("foo/\n", ["foo"]),
    ("foo/../bar\n", ["bar"]),
    ("//x//y/\n", ["x/y"]),
    ("/\n", ["/"]),
    ("   spaced   \n", ["spaced"]),
    ("  # not a comment (leading blank)\n", ["# not a comment (leading blank)"]),
    ("\ufeff*.md\r\n!README.md\r\n", ["*.md", "!README.md"]),
    (b"\xef\xbb\xbf*.log\n", ["*.log"]),
    ("!./keep\n", ["!keep"]),
])
def test_parse_cleans(text, patterns):
    assert parse(text) == patterns


@pytest.mark.parametrize("path,cleaned", [("a//b/./c/", "a/b/c"), ("", "."), ("//a", "/a"), ("a/..", ".")])
def test_clean(path, cleaned):
    assert clean(path) == cleaned


# (pattern, path, matches) -- moby/patternmatcher's TestMatches table (Linux rows)
MATCHES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    # a pattern matching a parent directory matches everything below it
    ("dir", "dir/sub/file", True),
    ("*", "dir/sub/file", True),
    ("*.go", "dir/main.go", False),       # anchored at the context root, unlike .gitignore
    ("/abs", "abs/file", True),
    ("./rel/x", "rel/x/y", True),
    ("te?t", "test/a", True),
    ("te[sx]t", "text", True),
]


@pytest.mark.parametrize("pattern,path,matches", MATCHES)
def test_matches(pattern, path, matches):
    assert Matcher([pattern]).excluded(path) is matches


# docs.docker.com/build/concepts/context/#dockerignore-files
DOCS_EXAMPLE = """
# comment
*/temp*
*/*/temp*
temp?
"""


@pytest.mark.parametrize("path,excluded", [
    ("somedir/temporary.txt", True),
    ("somedir/temp", True),
    ("somedir/subdir/temporary.txt", True),
    ("tempa", True),
    ("tempb/file", True),
    ("temp", False),
    ("temporary.txt", False),
    ("a/b/c/temp", False),
    ("comment", False),
])
def test_docs_example(path, excluded):
    assert Matcher(parse(DOCS_EXAMPLE)).excluded(path) is excluded


@pytest.mark.parametrize("text,path,excluded", [
    ("*.md\n!README.md\n", "README.md", False),
    ("*.md\n!README.md\n", "CHANGES.md", True),
    # the last matching line wins
    ("*.md\n!README*.md\nREADME-secret.md\n", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md\n", "README-public.md", False),
    ("*.md\nREADME-secret.md\n!README*.md\n", "README-secret.md", False),
    # an exception inside an excluded directory
    ("node_modules\n!node_modules/keep\n", "node_modules/keep/a.js", False),
    ("node_modules\n!node_modules/keep\n", "node_modules/drop/a.js", True),
    # an exception is overridden by a later exclusion of its parent
    ("!a/b\na\n", "a/b/c", True),
    # everything but one file
    ("*\n!src\n", "src/main.py", False),
    ("*\n!src\n", "docs/index.md", True),
    ("**\n!Dockerfile\n", "Dockerfile", False),
    ("**/*.pyc\n", "pkg/mod/__pycache__/x.pyc", True),
    ("**/__pycache__\n", "pkg/__pycache__/x.pyc", True),
])
def test_exceptions(text, path, excluded):
    assert Matcher(parse(text)).excluded(path) is excluded


def test_root_and_empty_paths_are_never_excluded():
    m = Matcher(["*"])
    assert m.excluded(".") is False
    assert m.excluded("") is False


def test_path_forms_are_cleaned():
    m = Matcher(["a/b"])
    assert m.excluded("./a/b") and m.excluded("/a/b/") and m.excluded("a//b/c")


@pytest.mark.parametrize("patterns,directory,may", [
    (["node_modules", "!node_modules/keep"], "node_modules", True),
    (["node_modules", "!node_modules/keep"], "node_modules/other", False),
    (["node_modules", "!node_modules/keep"], "node_modules/keep", True),
    (["node_modules", "!node_modules/keep/x.js"], "node_modules/keep", True),
    (["node_modules"], "node_modules", False),
    (["*", "!**/*.go"], "deep/dir", True),
    (["*", "!src/*/main.go"], "src/cmd", True),
    (["*", "!src/*/main.go"], "lib", False),
    (["*", "!src/*/main.go"], "src/cmd/sub", False),
    (["build", "!build"], "build", True),
])
def test_may_contain_included(patterns, directory, may):
    assert Matcher(patterns).may_contain_included(directory) is may


def test_walk_with_may_contain_included_finds_the_same_files_as_checking_every_path():
    # a small synthetic tree, walked the way the context sender does
    files = ["a/x.go", "a/y.txt", "node_modules/p/index.js", "node_modules/keep/k.js",
             "src/cmd/main.go", "src/cmd/other.go", "README.md", "deep/er/still/z.go"]
    patterns = parse("node_modules\n!node_modules/keep\n*.md\nsrc/**/other.go\n")
    m = Matcher(patterns)
    brute = sorted(f for f in files if not m.excluded(f))

    def walk(prefix):
        kids = sorted({f[len(prefix):].split("/")[0] for f in files if f.startswith(prefix)})
        for k in kids:
            path = prefix + k
            if path in files:
                if not m.excluded(path):
                    yield path
                continue
            if m.excluded(path, is_dir=True) and not m.may_contain_included(path):
                continue
            yield from walk(path + "/")

    assert sorted(walk("")) == brute
    assert "node_modules/keep/k.js" in brute and "node_modules/p/index.js" not in brute


@pytest.mark.parametrize("patterns", [["!"], ["a[b"], ["[" ]])
def test_bad_patterns(patterns):
    with pytest.raises(DockerignoreError):
        Matcher(patterns)
