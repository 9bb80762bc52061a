"""The lab layer: a network declared in a file (YAML or JSON), above the topology layer.

`labfile` reads a lab file and checks all of it before anything exists,
against `schema` (a JSON Schema validator for the keywords the shipped
`lab.schema.json` uses, so errors name the file's place); `lab` describes a
checked file to a `TopologyBuilder`, proves its `expect:` section and saves
and restores its faults; `reattach` takes a live lab up again from its record
in another process (the command line's `exec`, `check`, `impair`, `down`).
Where a lab's record lives, and how it outlives its command, is the
lifecycle layer's business (`lifecycle.labs`).
"""
