"""One error family for the whole host package; the CLI maps it to a message
and an exit code, so domain code never prints or exits by itself."""

# Documented in the README; tests assert them.
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug in convertctl: shown with a traceback under --debug
EXIT_USAGE = 2  # bad input: a file, a flag, a shape (typer uses 2 as well)
EXIT_CONVERSION = 3  # a stage could not produce its artifact
EXIT_VALIDATION = 4  # artifacts produced, but a check failed
EXIT_ENVIRONMENT = 5  # a stage environment could not be made or reached


class ConvertError(Exception):
    """An error with a message meant for the user, and the exit code to use."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(ConvertError):
    exit_code = EXIT_USAGE


class ConversionError(ConvertError):
    exit_code = EXIT_CONVERSION


class ValidationFailed(ConvertError):
    exit_code = EXIT_VALIDATION


class EnvironmentProblem(ConvertError):
    exit_code = EXIT_ENVIRONMENT


class MachineProblem(EnvironmentProblem):
    """The machine failed a step (a full disk, a quota), not the model nor one
    environment: another rung or quantizer would meet it too, so the ladders
    that pass over a broken environment let this one end the run."""


# What an installer, a build or a stage says when the machine failed it, not
# the model: a full disk is exit 5 wherever it is met. Lower case: Python says
# "No space left on device", Docker's daemon (Go) "no space left on device".
MACHINE_SIGNS = {
    "no space left on device": "no space left on the device",
    "[errno 28]": "no space left on the device",
    "disk quota exceeded": "disk quota exceeded",
    "[errno 122]": "disk quota exceeded",
}


def machine_sign(lines) -> str:
    """'' unless one of the lines says the disk (or quota) ran out: then that, in words."""
    said = [str(line).lower() for line in lines]
    return next((words for sign, words in MACHINE_SIGNS.items() if any(sign in line for line in said)), "")
