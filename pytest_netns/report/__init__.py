"""The report layer: what a failed test shows about its network.

`record` collects one test's topologies, probes and captures; `describe`
writes them as text, `diagram` as DOT, Mermaid and SVG; `capture` and `pcap`
record every link's frames; `summary` adds the session up.
"""
