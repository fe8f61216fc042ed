"""Pure plotly figure builders for the app and exports (no streamlit): law, overview and policy figures."""
