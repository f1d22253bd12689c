from lime.cli import main

main()
