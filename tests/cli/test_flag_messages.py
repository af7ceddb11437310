"""The library names parameters (`name`, `name=value`); the command line shows its flags."""

from leafscope.cli.main import _command_parser, as_flags, build_parser


def test_parameters_become_the_commands_flags_and_unknown_ones_stay_names():
    spectrum = _command_parser(build_parser(), "spectrum")
    message = "use `split=all` or a `holdout` F; pass `grey` and `resize=28,28`; `factory`"
    assert as_flags(message, spectrum) == (
        "use --split all or a --holdout F; pass --grey and --resize 28,28; --model"
    )
    assert as_flags("`nosuch=3` and `other`", spectrum) == "nosuch=3 and other"
    assert as_flags("`split=all`", None) == "split=all"  # the library's own wording
