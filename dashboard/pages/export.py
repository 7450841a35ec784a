"""Export page: the plan as YAML or JSON, a plan file imported (validated, every problem shown), the compressed model."""
import streamlit as st

from core.errors import RankscopeError
from core.plan import PlanError, loads_plan, validate_plan
from core.profile import example_input
from core.uploads import compressed_zip
from dashboard import cached, state

c = state.choice()
st.title("Export")
try:
    model, cfg = cached.model_and_cfg(*c.key)
    plan, problems = state.current_plan(c, with_hash=True)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
stem = cfg.name.replace(":", "-").replace("/", "-")

st.subheader("Download the plan")
st.caption(f"{len(plan.layers)} layer(s) and {len(plan.groups)} channel group(s) of {cfg.name}, made for weights {plan.weights_hash}. "
           "Apply it with `rankscope apply` or `core.plan.apply_plan`.")
for problem in problems:
    st.warning(f"left out of the export (fix it on the Plan page): {problem}")
left, right = st.columns(2)
left.download_button("Plan as YAML", plan.dumps("yaml"), file_name=f"{stem}-plan.yaml", mime="application/x-yaml",
                     icon=":material/download:", on_click="ignore")
right.download_button("Plan as JSON", plan.dumps("json"), file_name=f"{stem}-plan.json", mime="application/json",
                      icon=":material/download:", on_click="ignore")
with st.expander("Plan text"):
    st.code(plan.dumps("yaml"), language="yaml")


def _imported() -> None:
    """Parse and check an uploaded plan; a valid one replaces the plan under edit."""
    file = st.session_state["plan_upload"]
    st.session_state["import_problems"], st.session_state["import_note"] = [], ""
    if file is None:
        return
    try:
        text = file.getvalue().decode("utf-8")
        imported = loads_plan(text, source=file.name)
        found = validate_plan(imported, model, example_input(cfg, 1))
        if found:
            raise PlanError(found, file.name)
    except UnicodeDecodeError:
        st.session_state["import_problems"] = [f"{file.name} is not a text file"]
        return
    except PlanError as err:
        st.session_state["import_problems"] = err.problems
        return
    notes = []
    if imported.model != c.model:
        notes.append(f"it was made for {imported.model}, not {c.model}")
    if imported.weights_hash and imported.weights_hash != cached.weights_digest(*c.key):
        notes.append(f"it was made for weights {imported.weights_hash}, these are {cached.weights_digest(*c.key)}")
    state.set_plan(imported)
    st.session_state["import_note"] = f"Loaded {len(imported.layers)} layer(s) and {len(imported.groups)} channel group(s) from {file.name}" + (
        f" (note: {'; '.join(notes)})" if notes else "") + "; see the Plan page."


st.subheader("Import a plan")
st.file_uploader("Plan file (.yaml, .yml or .json)", type=["yaml", "yml", "json"], key="plan_upload", on_change=_imported)
if st.session_state.get("import_problems"):
    st.error("The plan was not loaded:\n" + "\n".join(f"- {p}" for p in st.session_state["import_problems"]))
elif st.session_state.get("import_note"):
    st.success(st.session_state["import_note"])

st.subheader("Download the compressed model")
if not plan.layers and not plan.groups:
    st.info("The plan changes no layer: plan at least one on the Plan page to export a compressed model.")
    st.stop()


def _zip() -> bytes:
    return compressed_zip(cached.planned_model(*c.evaluation, plan), plan, c.arch or c.model)


st.caption("A zip of the folder `rankscope apply` writes (weights, plan, metadata); open it with "
           "`create_model('file:FOLDER')` or upload it on the Model page. Built when you click.")
st.download_button("Compressed model (.zip)", _zip, file_name=f"{stem}-compressed.zip", mime="application/zip",
                   icon=":material/download:", on_click="ignore")
