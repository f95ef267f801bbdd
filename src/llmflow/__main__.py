from llmflow.cli.main import main

main()
