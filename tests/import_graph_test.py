"""Imports flow one way: the modules of deeplab_jax import each other without a cycle.

A cycle is what a function-local import hides (it only moves the failure to
run time), so the graph is read from every import statement of each module's
source, function bodies included, not from what Python happened to import.
"""

import ast
import importlib
import pkgutil

import deeplab_jax

PACKAGE = deeplab_jax.__name__


def package_modules():
  """{module name: module} of every module of the package, each imported."""
  names = [PACKAGE] + [info.name for info in pkgutil.walk_packages(deeplab_jax.__path__,
                                                                    PACKAGE + '.')]
  return {name: importlib.import_module(name) for name in names}


def imported_modules(module, known):
  """The package modules that `module`'s source imports anywhere in it."""
  with open(module.__file__) as f:
    tree = ast.parse(f.read(), module.__file__)
  is_package = module.__file__.endswith('__init__.py')
  imported = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      imported.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # Relative: resolved against this module's package.
        parts = module.__name__.split('.')
        anchor = parts[:len(parts) - node.level + (1 if is_package else 0)]
        base = '.'.join(anchor + ([base] if base else []))
      for alias in node.names:
        # `from package import module` imports that module; `from module import
        # name` imports the module that defines the name.
        submodule = f'{base}.{alias.name}'
        imported.add(submodule if submodule in known else base)
  return {name for name in imported if name in known and name != module.__name__}


def find_cycle(graph):
  """One cycle of the graph as [a, b, ..., a], or None."""
  visiting, done = [], set()

  def visit(node):
    visiting.append(node)
    for target in sorted(graph[node]):
      if target in visiting:
        return visiting[visiting.index(target):] + [target]
      if target not in done:
        cycle = visit(target)
        if cycle:
          return cycle
    visiting.pop()
    done.add(node)
    return None

  for node in sorted(graph):
    if node not in done:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_every_module_imports():
  modules = package_modules()
  assert f'{PACKAGE}.train' in modules and f'{PACKAGE}.data.datasets' in modules


def test_the_import_graph_has_no_cycle():
  modules = package_modules()
  graph = {name: imported_modules(module, modules) for name, module in modules.items()}
  assert graph[f'{PACKAGE}.train'], 'the graph must see imports (train imports the model)'
  cycle = find_cycle(graph)
  assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_find_cycle_names_the_cycle():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) is None
