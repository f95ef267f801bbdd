"""Flows and scripted model answers the console tests run (written into each test home)."""

ASK = """\
name: ask
description: Draft a text, then ask a person to approve it and sign it.
inputs:
  topic: {type: string, default: tea}
steps:
  - id: draft
    llm: {prompt: "Write about {{ inputs.topic }}"}
  - id: approve
    human: {prompt: "Publish the draft?", input: confirm}
  - id: name
    human: {prompt: "Your name?"}
  - id: final
    llm: {prompt: "Final: {{ steps.draft.output }} approved={{ steps.approve.output }} by {{ steps.name.output }}"}
outputs:
  approved: "{{ steps.approve.output }}"
  name: "{{ steps.name.output }}"
"""

SLOW = """\
name: slow
description: Three slow steps (for cancelling).
inputs:
  text: {type: string, default: x}
steps:
  - id: one
    llm: {prompt: "one {{ inputs.text }}"}
  - id: two
    llm: {prompt: "two {{ steps.one.output }}"}
  - id: three
    llm: {prompt: "three {{ steps.two.output }}"}
outputs:
  result: "{{ steps.three.output }}"
"""

NOTE = """\
name: note
description: Write a short Markdown note about a topic and save it as a file.
inputs:
  topic: {type: string, default: tea, description: What the note is about}
  words: {type: integer, default: 60, description: About how long}
steps:
  - id: outline
    llm: {prompt: "Write a note of {{ inputs.words }} words about {{ inputs.topic }}"}
  - id: save
    write_file: {path: "notes/{{ inputs.topic }}.md", content: "{{ steps.outline.output }}"}
outputs:
  note: "{{ steps.outline.output }}"
  file: "notes/{{ inputs.topic }}.md"
"""

BROKEN = """\
name: broken
description: A flow with a typo.
steps:
  - id: one
    llm: {prompt: "hi", promt_typo: 1}
"""

# `fake:writer` answers these in turn, so a re-run gives a different text (and a diff)
FAKE_SCRIPTS = """\
writer:
  latency: 0.4
  chunk_delay: 0.06
  answers:
    - |
      # Tea

      Tea is brewed from the leaves of *Camellia sinensis*.

      - green tea: steamed or pan-fired
      - black tea: fully oxidised
      - oolong: in between

      Serve green tea at **80 °C**.
    - |
      # Tea

      Tea is brewed from the leaves of *Camellia sinensis*, grown mostly in Asia.

      - green tea: steamed or pan-fired
      - black tea: fully oxidised
      - white tea: barely processed

      Serve green tea at **75-80 °C**; see [a guide](https://example.org/tea).
"""
