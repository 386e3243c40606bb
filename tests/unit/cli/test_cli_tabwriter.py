"""Go tabwriter layout as docker configures it (minwidth 10, padding 3)."""

from berth.cli._tabwriter import render


def test_ps_header_only() -> None:
    text = "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES\n"
    assert render(text) == (
        "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n")


def test_widths_follow_widest_cell() -> None:
    text = ("REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\n"
            "busybox\tlatest\t247aed9c7277\t4 minutes ago\t1.98MB\n"
            "<none>\t<none>\te390845529f0\t4 minutes ago\t1.92kB\n")
    assert render(text) == (
        "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE\n"
        "busybox      latest    247aed9c7277   4 minutes ago   1.98MB\n"
        "<none>       <none>    e390845529f0   4 minutes ago   1.92kB\n")


def test_wire_ps_capture() -> None:
    # reference/wire/31-ps.md
    text = ("CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES\n"
            '94350f640ba8\tbusybox\t"sh"\t1 second ago\tUp Less than a second\t\tagitated_wu\n'
            'a235b44777af\tbusybox\t"sleep 300"\t16 seconds ago\tUp 15 seconds\t\tsa-dbg\n')
    assert render(text) == (
        "CONTAINER ID   IMAGE     COMMAND       CREATED          STATUS                  PORTS     NAMES\n"
        '94350f640ba8   busybox   "sh"          1 second ago     Up Less than a second             agitated_wu\n'
        'a235b44777af   busybox   "sleep 300"   16 seconds ago   Up 15 seconds                     sa-dbg\n')


def test_ragged_lines_form_separate_blocks() -> None:
    text = "a\tb\nlonger-cell\tc\td\nx\n"
    assert render(text, minwidth=0, padding=1) == "a           b\nlonger-cell c d\nx\n"


def test_single_column_untouched() -> None:
    assert render("abc\ndefgh\n") == "abc\ndefgh\n"
