"""Images page: what a super-resolution model draws before and after compression. One photo of set5-like, a plan (the
one under edit, or one method on every layer), a crop; then the HR photo, its bicubic upscale, the dense and the
compressed model's images side by side (zoom one, all follow), where the two models differ (a per-pixel error map),
their colour shift and their PSNRs."""
import streamlit as st

from core.errors import RankscopeError
from core.evaluate.comparison import Crop
from core.models import list_models
from dashboard import cached, panels, plots, state

SR_MODELS = ("srmd-x2", "srmd-x4", "waifu2x-photo-x2")  # shipped super-resolution models, named when another is chosen


def _use(name: str) -> None:
    """Make the shipped model ``name`` the one every page works on, as the Model page's shipped-model box does."""
    st.session_state.update(model=name, arch="", shipped=name, source="shipped")


c = state.choice()
st.title("Images")
try:
    model, cfg = cached.model_and_cfg(*c.key)
except RankscopeError as err:
    st.error(str(err))
    st.stop()
if cfg.scale < 2:
    shipped = [m for m in SR_MODELS if m in list_models()]
    st.info(f"The Images page needs a super-resolution model: {cfg.name} does not output images (scale "
            f"{cfg.scale}). Choose one on the Model page ({', '.join(shipped)}), or here:", icon=":material/image:")
    for col, sr in zip(st.columns(max(len(shipped), 4)), shipped):
        col.button(f"Use {sr}", on_click=_use, args=(sr,))
    st.stop()
try:
    photos = cached.sr_photos(*c.key)
except RankscopeError as err:
    st.error(str(err))
    st.stop()

# --- what to compare: a photo, a plan, a crop -------------------------------------------------
if st.session_state.get("images_photo") not in photos.names:
    st.session_state["images_photo"] = photos.names[0]
left, mid, right = st.columns(3)
sizes = {n: "x".join(map(str, photos[i][1].shape[1:])) for i, n in enumerate(photos.names)}  # HR height x width
name = left.selectbox("Photo of set5-like", photos.names, format_func=lambda n: f"{n} ({sizes[n]} HR)",
                      **state.keep("images_photo"))
photo = photos.names.index(name)
height, width = photos[photo][1].shape[1:]
plan = panels.plan_choice(c, mid, "images", "tucker2")
side = right.slider("Crop side, HR pixels", 16, 256, step=8, **state.keep("images_side", 96))
across = right.slider("Crop centre across, % of the width", 0, 100, format="%d %%", **state.keep("images_across", 50))
down = right.slider("Crop centre down, % of the height", 0, 100, format="%d %%", **state.keep("images_down", 50))
crop = Crop(round(down / 100 * height - side / 2), round(across / 100 * width - side / 2), side, side)

# --- the images: each model runs on the whole photo once per plan; a new crop only cuts them again ---
try:
    shown = cached.comparison(*c.evaluation, c.threads, plan, photo, crop)
    layers = len(plan.layers) + len(plan.groups)
    base = cached.baseline_counts(*c.key)
    counted = cached.planned_counts(*c.evaluation, plan) if layers else base
except RankscopeError as err:
    st.error(str(err))
    st.stop()
st.caption(f"{cfg.name} x{cfg.scale} on {name}: the plan has {layers} entries"
           + (f" ({', '.join(sorted({e.method for e in plan.layers.values()}))})" if plan.layers else "")
           + ". Both models run on the whole low-resolution photo; every measure is on images rounded to 8 bits.")
if not layers:
    st.info("The plan is empty: the compressed model is the dense model.")
st.plotly_chart(plots.image_panels(shown, cfg.scale), width="stretch", key="images_panels")

cols = st.columns(6)
panels.cost_metric(cols[0], "Parameters", counted["params"], base["params"],
                   help="of the compressed model, counted on it")
cols[1].metric("Bicubic PSNR", f"{shown.psnr['bicubic']:.2f} dB",
               help=f"Y-channel PSNR of the crop against the HR photo; whole photo (border shaved) "
                    f"{shown.photo_psnr['bicubic']:.2f} dB")
cols[2].metric("Dense PSNR", f"{shown.psnr['dense']:.2f} dB",
               help=f"Y-channel PSNR of the crop against the HR photo; whole photo (border shaved) "
                    f"{shown.photo_psnr['dense']:.2f} dB")
cols[3].metric("Compressed PSNR", f"{shown.psnr['compressed']:.2f} dB",
               f"{shown.psnr['compressed'] - shown.psnr['dense']:+.2f} dB",
               help=f"Y-channel PSNR of the crop against the HR photo, change from the dense model's; whole photo "
                    f"(border shaved) {shown.photo_psnr['compressed']:.2f} dB")
cb, cr = shown.chroma_shift
cols[4].metric("Colour shift (crop)", f"{shown.colour_shift:.2f} levels",
               help=f"‖(mean ΔCb, mean ΔCr)‖ of the crop, compressed minus dense, BT.601 in 8-bit levels: "
                    f"ΔCb {cb:+.2f}, ΔCr {cr:+.2f}")
cols[5].metric("Colour shift (photo)", f"{shown.photo_colour_shift:.2f} levels",
               help="the fidelity task's colour_shift of the whole photo, border shaved (the Plan page averages it "
                    "over the photos)")
st.plotly_chart(plots.error_map(shown), width="stretch", key="images_error")
