"""learn and animate end to end, and the library's housekeeping, under the CLI.

`plan` resolves presets and flags into settings once and fits them to the base; `learn` prepares the
clips, trains, fine-tunes the DED, stages and saves the action; `animate` loads adapters and decoders,
samples and writes; `outputs` plans output paths and writes each video with its provenance sidecar;
`actions` answers inspect, remove, rename, export and import. They report progress and notes through
`report.Reporter` and never print: the CLI renders, and bench and scripts call the same functions, so
what they measure is what users run. Heavy modules (torch, diffusers) are imported inside functions.
"""
