"""The paper's tasks, each with its data, front end, training glue and command-line jobs."""
