"""The hf-probex Space: infer a model card, browse a model tree, search LoRAs by text, list the experts.

The app itself lives in the package (`hf_probex.space.app`), so that `hf-probex space` serves the same
one locally; this file is what the Hub runs (`app_file` in README.md). The Hub it talks to is the one
huggingface_hub is configured for (HF_ENDPOINT; the real Hub on a Space), and its experts are the
Hub's models tagged `probex-expert` plus any in the local registry file.
"""

from hf_probex.space.app import create_app

demo = create_app()

if __name__ == "__main__":
    demo.launch()
