"""Pure figure builders: a DataFrame in, a Plotly figure out, no Streamlit inside."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def layer_bars(table: pd.DataFrame) -> go.Figure:
    """Per-layer parameters and FLOPs (one sample) as two bar rows sharing the layer axis."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("Parameters per layer", "FLOPs per layer (one image, 1 MAC = 2 FLOPs)"))
    fig.add_bar(x=table["name"], y=table["params"], name="parameters", marker_color="#4c78a8", row=1, col=1)
    fig.add_bar(x=table["name"], y=table["flops"], name="FLOPs", marker_color="#f58518", row=2, col=1)
    fig.update_yaxes(title_text="parameters", row=1, col=1)
    fig.update_yaxes(title_text="FLOPs", row=2, col=1)
    fig.update_layout(height=520, showlegend=False, margin=dict(l=40, r=10, t=40, b=10))
    return fig
