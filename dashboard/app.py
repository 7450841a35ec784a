"""rankscope dashboard entry point: page config and navigation only; every page lives in ``pages/``."""
import streamlit as st

st.set_page_config(page_title="rankscope", page_icon="📉", layout="wide")
pages = [
    st.Page("pages/model.py", title="Model", icon="🧱", default=True),
]
st.navigation(pages).run()
