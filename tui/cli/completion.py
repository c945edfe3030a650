"""`blockvault completion bash|zsh|fish`: a shell completion script made from the parser itself
(nouns, verbs, options, choices), so it never falls behind the commands. Where an argument takes
a server, disk, snapshot, vault, backup or policy, the script asks `blockvault __complete KIND`
(hidden) for the names in the catalog: opened read-only, nothing else loaded.

Neither opens the catalog in `main`: each runs as `run_without_catalog(args, build_parser)`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from core.api import BlockvaultError, printable

Parser = argparse.ArgumentParser

SHELLS = ("bash", "zsh", "fish")

#: an argument (by its dest) that takes the name of one of these kinds ("," between several)
NAME_KINDS = {
    "server": "server",
    "disk": "disk",
    "snapshot": "snapshot",
    "vault": "vault",
    "backup": "backup",
    "policy": "policy",
    "target": "disk,server",  # policy apply|unapply POLICY DISK|SERVER...
}
#: an argument that takes a path on this host
PATH_DESTS = {"home", "path", "image", "prometheus"}

DESCRIPTION = """\
Print a completion script for SHELL. Install it with one of:
  bash   echo 'source <(blockvault completion bash)' >> ~/.bashrc
  zsh    echo 'source <(blockvault completion zsh)' >> ~/.zshrc
  fish   blockvault completion fish > ~/.config/fish/completions/blockvault.fish
Nouns, verbs, options and choices come from the script; the names of disks, backups, vaults,
snapshots, servers and policies from the catalog (the one --home/--catalog on the line names),
read when TAB is pressed."""


def add_to(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(run_without_catalog=print_script)


def add_complete_to(p: argparse.ArgumentParser) -> None:
    """`__complete KINDS` (hidden from --help): what the scripts call for names."""
    p.add_argument("kinds", help="server, disk, snapshot, vault, backup or policy; ',' between")
    p.set_defaults(run_without_catalog=print_names)


def print_script(args: argparse.Namespace, build_parser: Callable[[], Parser]) -> int:
    """The script for `args.shell`, from the whole parser (`build_parser()`: every noun)."""
    table = command_table(build_parser())
    sys.stdout.write(fish_script(table) if args.shell == "fish" else bash_script(table, args.shell))
    return 0


def print_names(args: argparse.Namespace, build_parser: Callable[[], Parser]) -> int:
    """The names of `args.kinds`, one a line; none when there is no catalog to read yet."""
    from core.api import Blockvault  # lazy: the façade brings SQLModel (0.5 s), needed here only

    try:
        bv = Blockvault.open(home=args.home, catalog_url=args.catalog, read_only=True)
    except BlockvaultError:
        return 0  # no catalog yet, or one to migrate first: nothing to offer
    try:
        names = [name for kind in args.kinds.split(",") for name in bv.names(kind)]
    finally:
        bv.close()
    sys.stdout.write("".join(printable(name) + "\n" for name in names))
    return 0


# --- the parser as a table ------------------------------------------------------------------

# A command is its path of words ("" the top level, "disk", "disk show"). A value spec says what
# an option's value or a positional argument takes: "@KINDS" names from the catalog, ":A B C"
# one of these choices, "/" a path, "-" free text (nothing to offer).


class Command:
    def __init__(self) -> None:
        self.subcommands: list[str] = []
        self.options: list[str] = []
        self.values: dict[str, str] = {}  # option -> value spec, for options that take one
        self.positionals: list[tuple[str, bool]] = []  # (value spec, repeats)


def value_spec(action: argparse.Action) -> str:
    if action.choices is not None:
        return ":" + " ".join(str(choice) for choice in action.choices)
    if action.dest in NAME_KINDS:
        return "@" + NAME_KINDS[action.dest]
    return "/" if action.dest in PATH_DESTS else "-"


def command_table(parser: argparse.ArgumentParser) -> dict[str, Command]:
    table: dict[str, Command] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        command = table[path] = Command()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for shown in action._choices_actions:  # the ones with a help: not __complete
                    command.subcommands.append(shown.dest)
                    walk(action.choices[shown.dest], f"{path} {shown.dest}".strip())
            elif action.help == argparse.SUPPRESS:
                continue
            elif action.option_strings:
                command.options += action.option_strings
                if action.nargs != 0:
                    command.values.update(dict.fromkeys(action.option_strings, value_spec(action)))
            else:
                repeats = action.nargs in ("*", "+")
                command.positionals.append((value_spec(action), repeats))

    walk(parser, "")
    return table


# --- bash (and zsh, through bashcompinit) -----------------------------------------------------

BASH_ENGINE = r"""
# Walk the words before the cursor: subcommands extend the command's path, an option that
# takes a value skips it, other words are positional arguments. Then offer what fits.
_blockvault() {
    local bv_cur="${COMP_WORDS[COMP_CWORD]}" bv_path="" bv_word
    local bv_i=1 bv_npos=0
    local -a bv_globals
    bv_globals=()
    COMPREPLY=()
    while [ "$bv_i" -lt "$COMP_CWORD" ]; do
        bv_word="${COMP_WORDS[bv_i]}"
        case "$bv_word" in
        -*)
            _blockvault_value "$bv_path" "$bv_word"
            if [ -n "$_bv_reply" ]; then
                bv_i=$((bv_i + 1))
                if [ "$bv_i" -eq "$COMP_CWORD" ]; then
                    _blockvault_offer "$_bv_reply"
                    return 0
                fi
                if [ -z "$bv_path" ]; then  # --home, --catalog: which catalog to read names from
                    bv_globals+=("$bv_word" "${COMP_WORDS[bv_i]}")
                fi
            fi
            ;;
        *)
            _blockvault_sub "$bv_path"
            case " $_bv_reply " in
            *" $bv_word "*) bv_path="${bv_path:+$bv_path }$bv_word" ;;
            *) bv_npos=$((bv_npos + 1)) ;;
            esac
            ;;
        esac
        bv_i=$((bv_i + 1))
    done
    case "$bv_cur" in
    -*)
        _blockvault_opts "$bv_path"
        COMPREPLY=($(compgen -W "$_bv_reply" -- "$bv_cur"))
        return 0
        ;;
    esac
    _blockvault_sub "$bv_path"
    if [ -n "$_bv_reply" ]; then
        COMPREPLY=($(compgen -W "$_bv_reply" -- "$bv_cur"))
        return 0
    fi
    _blockvault_positional "$bv_path" "$bv_npos"
    _blockvault_offer "$_bv_reply"
}

# What a value spec offers: @KINDS names from the catalog, :CHOICES, / paths, - nothing.
_blockvault_offer() {
    case "$1" in
    @*)
        COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${bv_globals[@]}" __complete "${1#@}" 2>/dev/null)" -- "$bv_cur"))
        ;;
    :*) COMPREPLY=($(compgen -W "${1#:}" -- "$bv_cur")) ;;
    /)
        COMPREPLY=($(compgen -f -- "$bv_cur"))
        compopt -o filenames 2>/dev/null  # bash: directories get their slash
        ;;
    esac
}

complete -F _blockvault blockvault
"""


def _sh_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def bash_script(table: dict[str, Command], shell: str = "bash") -> str:
    sub = [
        f"    {_sh_quote(p)}) _bv_reply={_sh_quote(' '.join(c.subcommands))} ;;"
        for p, c in table.items()
        if c.subcommands
    ]
    opts = [
        f"    {_sh_quote(p)}) _bv_reply={_sh_quote(' '.join(c.options))} ;;"
        for p, c in table.items()
        if c.options
    ]
    values = [
        f"    {_sh_quote(f'{p}|{option}')}) _bv_reply={_sh_quote(spec)} ;;"
        for p, c in table.items()
        for option, spec in c.values.items()
    ]
    positionals = []
    for p, c in table.items():
        for index, (spec, repeats) in enumerate(c.positionals):
            if spec == "-":
                continue
            pattern = _sh_quote(f"{p}|") + "*" if repeats else _sh_quote(f"{p}|{index}")
            positionals.append(f"    {pattern}) _bv_reply={_sh_quote(spec)} ;;")
    head = [
        f"# blockvault completion for {shell}: `blockvault completion {shell}`, made from its "
        "parser.",
    ]
    if shell == "zsh":
        head += [
            "# zsh runs the bash completion below through bashcompinit.",
            "if ! (( $+functions[compdef] )); then autoload -Uz compinit && compinit; fi",
            "autoload -Uz bashcompinit && bashcompinit",
        ]
    parts = [
        *head,
        "",
        "# The subcommands of a command (by its path of words).",
        '_blockvault_sub() {\n    _bv_reply=""\n    case "$1" in',
        *sub,
        "    esac\n}",
        "",
        "# The options of a command.",
        '_blockvault_opts() {\n    _bv_reply=""\n    case "$1" in',
        *opts,
        "    esac\n}",
        "",
        "# What an option takes (see _blockvault_offer); empty for a flag.",
        '_blockvault_value() {\n    _bv_reply=""\n    case "$1|$2" in',
        *values,
        "    esac\n}",
        "",
        "# What the Nth positional argument (from 0) of a command takes.",
        '_blockvault_positional() {\n    _bv_reply=""\n    case "$1|$2" in',
        *positionals,
        "    esac\n}",
        BASH_ENGINE,
    ]
    return "\n".join(parts)


# --- fish ---------------------------------------------------------------------------------------

FISH_ENGINE = r"""
# Walk the words before the cursor: subcommands extend the command's path, an option that
# takes a value skips it, other words are positional arguments. Then print what fits.
function __blockvault_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -l bv_path ''
    set -l npos 0
    set -l globals
    set -l i 2
    while test $i -le (count $words)
        set -l word $words[$i]
        if string match -q -- '-*' $word
            set -l spec (__blockvault_value "$bv_path" $word)
            if test -n "$spec"
                set i (math $i + 1)
                if test $i -gt (count $words)
                    __blockvault_offer "$spec" $words[1] $globals
                    return
                end
                if test -z "$bv_path"  # --home, --catalog: which catalog to read names from
                    set -a globals $word $words[$i]
                end
            end
        else if contains -- $word (__blockvault_sub "$bv_path")
            set bv_path (string trim -- "$bv_path $word")
        else
            set npos (math $npos + 1)
        end
        set i (math $i + 1)
    end
    if string match -q -- '-*' $cur
        __blockvault_opts "$bv_path"
        return
    end
    set -l subs (__blockvault_sub "$bv_path")
    if test (count $subs) -gt 0
        printf '%s\n' $subs
        return
    end
    set -l spec (__blockvault_positional "$bv_path" $npos)
    __blockvault_offer "$spec" $words[1] $globals
end

# What a value spec offers: @KINDS names from the catalog, :CHOICES, / paths, - nothing.
function __blockvault_offer
    set -l spec $argv[1]
    set -l command $argv[2]
    set -e argv[1 2]
    switch $spec
        case '@*'
            $command $argv __complete (string sub -s 2 -- $spec) 2>/dev/null
        case ':*'
            string split ' ' -- (string sub -s 2 -- $spec)
        case /
            __fish_complete_path (commandline -ct)
    end
end

complete -c blockvault -f -a '(__blockvault_complete)'
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_script(table: dict[str, Command]) -> str:
    def lines(text: str) -> str:
        return "printf '%s\\n' " + " ".join(_fish_quote(word) for word in text.split())

    sub = [
        f"        case {_fish_quote(p)}\n            {lines(' '.join(c.subcommands))}"
        for p, c in table.items()
        if c.subcommands
    ]
    opts = [
        f"        case {_fish_quote(p)}\n            {lines(' '.join(c.options))}"
        for p, c in table.items()
        if c.options
    ]
    values = [
        f"        case {_fish_quote(f'{p}|{option}')}\n            echo {_fish_quote(spec)}"
        for p, c in table.items()
        for option, spec in c.values.items()
    ]
    positionals = []
    for p, c in table.items():
        for index, (spec, repeats) in enumerate(c.positionals):
            if spec == "-":
                continue
            pattern = _fish_quote(f"{p}|*" if repeats else f"{p}|{index}")  # fish: quoted globs
            positionals.append(f"        case {pattern}\n            echo {_fish_quote(spec)}")
    parts = [
        "# blockvault completion for fish: `blockvault completion fish`, made from its parser.",
        "",
        "# The subcommands of a command (by its path of words).",
        "function __blockvault_sub\n    switch $argv[1]",
        *sub,
        "    end\nend",
        "",
        "# The options of a command.",
        "function __blockvault_opts\n    switch $argv[1]",
        *opts,
        "    end\nend",
        "",
        "# What an option takes (see __blockvault_offer); nothing for a flag.",
        'function __blockvault_value\n    switch "$argv[1]|$argv[2]"',
        *values,
        "    end\nend",
        "",
        "# What the Nth positional argument (from 0) of a command takes.",
        'function __blockvault_positional\n    switch "$argv[1]|$argv[2]"',
        *positionals,
        "    end\nend",
        FISH_ENGINE,
    ]
    return "\n".join(parts)
