import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("livecodebench")
launch_gradio_widget(module)
