"""rankscope dashboard entry point: page config and navigation only; every page lives in ``pages/``."""
import streamlit as st

st.set_page_config(page_title="rankscope", page_icon=":material/compress:", layout="wide")
pages = [
    st.Page("pages/model.py", title="Model", icon=":material/deployed_code:", default=True),
    st.Page("pages/layer_explorer.py", title="Layer explorer", icon=":material/biotech:"),
    st.Page("pages/sensitivity.py", title="Sensitivity", icon=":material/grid_on:"),
    st.Page("pages/attention.py", title="Attention", icon=":material/hub:"),
    st.Page("pages/density.py", title="Sampling density", icon=":material/density_medium:"),
    st.Page("pages/plan.py", title="Plan", icon=":material/table_chart:"),
    st.Page("pages/images.py", title="Images", icon=":material/photo_library:"),
    st.Page("pages/text.py", title="Text", icon=":material/notes:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
]
st.navigation(pages).run()
