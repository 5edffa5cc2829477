// fiber::io (issue 9): being written.
