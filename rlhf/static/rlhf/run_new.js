// Launch form: a preset fills the fields it names; a field shows only while it has an effect
// (its data-applies-when: {controlling field: [values]}). The server validates either way, and
// hidden fields are still sent with their values. No inline scripts (the site's CSP).

const form = document.querySelector("[data-testid=run-form]");

function control(name) {
  return form.querySelector(`[name="${CSS.escape(name)}"]`);
}

function valueOf(input) {
  if (input.type === "checkbox") return input.checked;
  return input.value;
}

function setValue(input, value) {
  if (input.type === "checkbox") input.checked = Boolean(value);
  else if (Array.isArray(value)) input.value = value.join(", ");
  else input.value = String(value);
}

function matches(current, allowed) {
  // Values arrive typed from JSON (true, "deepspeed", 2); inputs give strings or booleans.
  return allowed.some((value) => (typeof value === "boolean" ? current === value : String(value) === String(current)));
}

function refresh() {
  for (const box of form.querySelectorAll("[data-applies-when]")) {
    const rules = JSON.parse(box.dataset.appliesWhen || "{}");
    let applies = true;
    for (const [name, allowed] of Object.entries(rules)) {
      const input = control(name);
      if (input && !matches(valueOf(input), allowed)) applies = false;
    }
    // A field the server marked invalid stays visible until it is fixed.
    box.hidden = !applies && !box.classList.contains("invalid");
  }
}

function applyPreset(name) {
  // Read from an attribute: pages carry no inline script, not even inert JSON.
  const presets = JSON.parse(document.getElementById("run-presets").dataset.presets);
  const preset = presets.find((p) => p.name === name);
  if (!preset) return;
  for (const [field, value] of Object.entries(preset.values)) {
    const input = control(field);
    if (input) setValue(input, value);
  }
}

if (form) {
  const presetSelect = form.querySelector("[name=preset]");
  presetSelect?.addEventListener("change", () => {
    applyPreset(presetSelect.value);
    refresh();
  });
  form.addEventListener("change", refresh);
  refresh();
}
