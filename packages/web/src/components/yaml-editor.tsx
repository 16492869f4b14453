import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { yaml } from '@codemirror/lang-yaml';
import { defaultHighlightStyle, syntaxHighlighting } from '@codemirror/language';
import { type Diagnostic, lintGutter, setDiagnostics } from '@codemirror/lint';
import { EditorState, RangeSet, StateEffect, StateField, type Text } from '@codemirror/state';
import {
  EditorView,
  GutterMarker,
  gutterLineClass,
  highlightActiveLine,
  highlightActiveLineGutter,
  keymap,
  lineNumbers,
} from '@codemirror/view';
import { forwardRef, useEffect, useImperativeHandle, useRef } from 'react';

/** One linter message at a 1-based line and column (the role linter's own positions). */
export interface EditorMessage {
  line: number;
  column: number;
  severity: 'error' | 'warning';
  message: string;
}

export interface YamlEditorHandle {
  /** Puts the cursor at a 1-based line and column and scrolls it into view. */
  jumpTo(line: number, column: number): void;
}

/** Document offset of a 1-based line and column, clamped into the document. */
export function offsetOf(doc: Text, line: number, column: number): number {
  const l = doc.line(Math.min(Math.max(1, line), doc.lines));
  return Math.min(l.from + Math.max(0, column - 1), l.to);
}

/**
 * The lint package draws its markers and squiggles with data: SVG images,
 * which the UI's Content-Security-Policy (img-src 'self') refuses: the
 * same shapes in plain CSS.
 */
const cspSafeLintTheme = EditorView.theme({
  '.cm-lint-marker': { content: 'normal', borderRadius: '2px' },
  '.cm-lint-marker-error': { content: 'normal', background: '#f43', borderRadius: '50%' },
  '.cm-lint-marker-warning': { content: 'normal', background: '#fc5' },
  '.cm-lint-marker-info': { content: 'normal', background: '#99e' },
  '.cm-lintRange-error': { backgroundImage: 'none', textDecoration: 'underline wavy #f11' },
  '.cm-lintRange-warning': { backgroundImage: 'none', textDecoration: 'underline wavy orange' },
  '.cm-lintRange-info': { backgroundImage: 'none', textDecoration: 'underline wavy #999' },
  '.cm-lintRange-hint': { backgroundImage: 'none', textDecoration: 'underline dotted #66d' },
});

class BadLine extends GutterMarker {
  override elementClass = 'bad';
}
const badLine = new BadLine();

/** Sets the lines (their start offsets) whose number shows as bad. */
const setBadLines = StateEffect.define<number[]>();

/**
 * The line numbers of lines with an error, as a class on their gutter
 * element (set with the diagnostics, then moved with the edits).
 */
const badLines = StateField.define<RangeSet<GutterMarker>>({
  create: () => RangeSet.empty,
  update(value, tr) {
    for (const e of tr.effects) {
      if (e.is(setBadLines))
        return RangeSet.of([...new Set(e.value)].sort((a, b) => a - b).map((from) => badLine.range(from)));
    }
    return value.map(tr.changes);
  },
  provide: (f) => gutterLineClass.from(f),
});

/**
 * A YAML editor (CodeMirror 6): real lines, so the line numbers and the lint
 * markers stay on the line they belong to when a long line wraps, which a
 * textarea beside a column of numbers cannot do.
 */
export const YamlEditor = forwardRef<
  YamlEditorHandle,
  { value: string; onChange: (text: string) => void; messages: EditorMessage[]; label: string }
>(function YamlEditor({ value, onChange, messages, label }, ref) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | undefined>(undefined);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;

  // biome-ignore lint/correctness/useExhaustiveDependencies: one editor per mount; value is synced below
  useEffect(() => {
    if (!host.current) return;
    const v = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: value,
        extensions: [
          lineNumbers(),
          lintGutter(),
          cspSafeLintTheme,
          badLines,
          highlightActiveLine(),
          highlightActiveLineGutter(),
          history(),
          keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
          yaml(),
          syntaxHighlighting(defaultHighlightStyle),
          EditorView.lineWrapping,
          EditorView.contentAttributes.of({ 'aria-label': label, spellcheck: 'false' }),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) onChangeRef.current(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    return () => {
      v.destroy();
      view.current = undefined;
    };
  }, []);

  // A new text from outside (another role opened): replace the document.
  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== value) {
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value } });
    }
  }, [value]);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const doc = v.state.doc;
    const diagnostics: Diagnostic[] = messages.map((m) => {
      const from = offsetOf(doc, m.line, m.column);
      return { from, to: Math.max(from, doc.lineAt(from).to), severity: m.severity, message: m.message };
    });
    v.dispatch(setDiagnostics(v.state, diagnostics));
    const bad = diagnostics.filter((d) => d.severity === 'error').map((d) => doc.lineAt(d.from).from);
    v.dispatch({ effects: setBadLines.of(bad) });
  }, [messages]);

  useImperativeHandle(ref, () => ({
    jumpTo(line, column) {
      const v = view.current;
      if (!v) return;
      const pos = offsetOf(v.state.doc, line, column);
      v.dispatch({ selection: { anchor: pos }, scrollIntoView: true });
      v.focus();
    },
  }));

  return <div className="yaml-editor" ref={host} data-testid="role-editor" />;
});
