"""The one exception type for mistakes a user can make (bad file, wrong option, mismatch).

Every layer raises it with a message that names the file, the field and the fix; the CLI turns it
into a single line on stderr and exit code 2.
"""


class MoecacheError(Exception):
    """A problem with the user's input, said in one line."""
