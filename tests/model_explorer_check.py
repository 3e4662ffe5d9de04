"""A convertctl overlay read by Model Explorer's own code. Runs INSIDE a
throwaway venv with ai-edge-model-explorer (never in the host test process):

    python model_explorer_check.py MODEL.tflite OVERLAY.json

The overlay is rebuilt with model_explorer.node_data_builder's dataclasses
(an unknown or missing field fails there), and its keys are looked up among
the output tensor names of the graph Model Explorer's TFLite adapter makes
of the file: a key no node outputs would colour nothing. Prints JSON."""

import json
import sys

from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter
from model_explorer.node_data_builder import GraphNodeData, NodeDataResult, ThresholdItem


def main(model, overlay):
    data = json.load(open(overlay))
    rebuilt = GraphNodeData(
        name=data["name"],
        results={k: NodeDataResult(**v) for k, v in data["results"].items()},
        thresholds=[ThresholdItem(**t) for t in data["thresholds"]],
    )
    full = json.loads(rebuilt.to_json_string())
    same = all(full.get(k) == v for k, v in data.items())
    graphs = BuiltinTfliteFlatbufferAdapter().convert(model, {})["graphCollections"][0].graphs
    names = set()
    for graph in graphs:
        for node in graph["nodes"]:
            for meta in node.get("outputsMetadata", []):
                names.update(a["value"] for a in meta.get("attrs", []) if a["key"] == "tensor_name")
    print(
        json.dumps(
            {
                "rebuilt": same,
                "keys": len(data["results"]),
                "unmatched": sorted(k for k in data["results"] if k not in names),
                "tensor_names": len(names),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
