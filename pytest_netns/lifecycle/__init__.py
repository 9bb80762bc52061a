"""The lifecycle layer: a session's start and end, crash recovery, the choice of backend.

`hooks` starts and ends a session; `watchdog` outlives a killed pytest and
cleans up after it; `reaper` sweeps what dead sessions left; `backend`
chooses Docker or bare namespaces; `shared` keeps topologies that outlive one
test (`netns_factory`); `labs` keeps labs that outlive the command that built
them (a lab is a kept session).
"""
